"""The per-trial HTML report: ``render_report(results_dir, config_path, out_html, logs)``.

Modules: :mod:`.context` (the results folder and trial config every section reads),
:mod:`.estimates` (the one place rows of estimates.csv / crosscheck.csv are selected and named),
:mod:`.blocks` (sections and their blocks), :mod:`.tables` (formatting, small-count suppression),
:mod:`.figures` (matplotlib -> PNG data URIs), one module per section (:mod:`.attention`,
:mod:`.summary`, :mod:`.design_section`, :mod:`.trends`, :mod:`.effects`,
:mod:`.alignment_section`, :mod:`.checks`, :mod:`.planning`, :mod:`.methods`,
:mod:`.provenance_section`) and :mod:`.render` (jinja2 template ``templates/template.html.j2``).
"""

from qialign.report.render import SECTION_IDS, render_report

__all__ = ["SECTION_IDS", "render_report"]

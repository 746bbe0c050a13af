"""The per-trial HTML report: ``render_report(results_dir, config_path, out_html, logs)``.

Modules: :mod:`.tables` (formatting, small-count suppression), :mod:`.figures` (matplotlib ->
PNG data URIs), :mod:`.sections` (one function per section, reading the results folder) and
:mod:`.render` (jinja2 template ``templates/template.html.j2``).
"""

from qialign.report.render import render_report
from qialign.report.sections import SECTION_IDS

__all__ = ["SECTION_IDS", "render_report"]

"""Assemble the per-trial HTML report: gather every section, render the jinja2 template.

The page is self-contained: styles and the one small script are inline, figures are PNG data
URIs, and nothing refers to the network. Links to step logs and the validation summary are
relative file paths.
"""

from __future__ import annotations

import datetime as _dt
from importlib.resources import files
from pathlib import Path

import jinja2

from qialign.config import load_trial_config
from qialign.provenance import package_versions
from qialign.report.alignment_section import alignment
from qialign.report.attention import ALL_CLEAR, attention
from qialign.report.baseline_table import baseline
from qialign.report.blocks import Section
from qialign.report.checks import model_checks
from qialign.report.consort import consort, consort_checklist
from qialign.report.context import Context
from qialign.report.design_section import data_flow, design
from qialign.report.effects import effects
from qialign.report.methods import methods
from qialign.report.plain_summary import plain_summary
from qialign.report.planning import planning
from qialign.report.provenance_section import logs, provenance
from qialign.report.robustness_section import robustness
from qialign.report.spc_section import spc_section
from qialign.report.summary import summary
from qialign.report.trends import time_trends

#: the sections in page order (the "needs attention" box is gathered separately, first)
SECTIONS = [
    plain_summary,
    summary,
    design,
    data_flow,
    consort,
    baseline,
    time_trends,
    spc_section,
    effects,
    alignment,
    model_checks,
    robustness,
    planning,
    methods,
    provenance,
    logs,
    consort_checklist,
]
SECTION_IDS = [
    "attention",
    "plain-summary",
    "summary",
    "design",
    "data-flow",
    "consort",
    "baseline",
    "time-trends",
    "spc",
    "effects",
    "alignment",
    "model-checks",
    "robustness",
    "planning",
    "methods",
    "provenance",
    "logs",
    "consort-checklist",
]


def _environment() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(files("qialign.report") / "templates"))
    return jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_sections(ctx: Context) -> list[Section]:
    """Every section in page order."""
    return [fn(ctx) for fn in SECTIONS]


def render_report(
    results_dir: Path, config_path: Path, out_html: Path, logs: list[Path] | None = None
) -> None:
    """Write ``out_html``: the self-contained report of one trial from its results folder.

    ``results_dir`` is ``results/<trial>``; ``config_path`` the trial config (validated, defaults
    filled); ``logs`` the step logs to link (relative to the page). Missing optional parts are said
    in the page; missing or unreliable results are listed in the "needs attention" box.
    """
    results_dir, config_path, out_html = Path(results_dir), Path(config_path), Path(out_html)
    cfg = load_trial_config(config_path)
    ctx = Context(
        results=results_dir,
        cfg=cfg,
        config_path=config_path,
        out_html=out_html,
        logs=[Path(p) for p in (logs or [])],
    )
    html = (
        _environment()
        .get_template("template.html.j2")
        .render(
            cfg=cfg,
            title=ctx.title,
            trial=ctx.trial,
            synthetic=ctx.synthetic,
            attention=attention(ctx),
            all_clear=ALL_CLEAR,
            sections=build_sections(ctx),
            generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            version=package_versions().get("qialign", "unknown"),
        )
    )
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")

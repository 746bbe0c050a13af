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
from qialign.report import sections as S


def _environment() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(files("qialign.report") / "templates"))
    return jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_sections(ctx: S.Context) -> list[S.Section]:
    """Every section in page order (the "needs attention" box is gathered separately)."""
    return [fn(ctx) for fn in S.SECTIONS]


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
    ctx = S.Context(
        results=results_dir,
        cfg=cfg,
        config_path=config_path,
        out_html=out_html,
        logs=[Path(p) for p in (logs or [])],
    )
    attention = S.attention(ctx)
    sections = build_sections(ctx)
    html = (
        _environment()
        .get_template("template.html.j2")
        .render(
            cfg=cfg,
            title=cfg.get("title") or cfg["id"],
            trial=cfg["id"],
            synthetic=bool(cfg.get("synthetic")),
            attention=attention,
            sections=sections,
            generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            version=_version(),
        )
    )
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")


def _version() -> str:
    from qialign.provenance import package_versions

    return package_versions().get("qialign", "unknown")

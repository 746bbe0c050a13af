"""Provenance (data files, seeds, versions, the trial config) and the step logs."""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup, escape

from qialign import provenance as prov
from qialign.report.blocks import NOTE, TAB, P, Section
from qialign.report.context import Context
from qialign.report.tables import DASH, Table, num


def provenance(ctx: Context) -> Section:
    blocks = []
    data = ctx.json("data.json") or {}
    files = data.get("files") or {}
    if not files:
        for o in ctx.outcomes:
            files = (ctx.json(o, "prepared.json") or {}).get("files") or {}
            if files:
                break
    ft = Table(["Table", "Path", "Rows", "SHA-256"], [], numeric={2}, caption="Data files as read.")
    for name, f in files.items():
        ft.rows.append(
            [name, str(f.get("path", DASH)), ctx.count(f.get("rows"), name), str(f.get("sha256", DASH))]
        )
    blocks.append(TAB(ft) if files else NOTE("No data file record (data.json missing).", "bad"))
    st = Table(
        ["Outcome", "Model", "Seed", "Engine", "Chains × draws", "Compile (s)", "Sampling (s)"],
        [],
        numeric={2, 5, 6},
    )
    versions, commit = None, None
    for outcome in ctx.outcomes:
        for model in ctx.models(outcome):
            fit = ctx.fit(outcome, model)
            if fit is None:
                continue
            s, tm = fit.sampler or {}, fit.timings or {}
            st.rows.append(
                [
                    ctx.label(outcome),
                    model,
                    DASH if fit.seed is None else str(fit.seed),
                    str(s.get("engine", DASH)),
                    f"{s.get('chains', DASH)} × {s.get('draws', DASH)}",
                    num(tm.get("compile_s"), 1),
                    num(tm.get("sample_s"), 1),
                ]
            )
            versions = versions or fit.versions
            commit = commit or fit.git_commit
    blocks.append(
        P(f"Master seed: <strong>{escape(str(ctx.seed))}</strong> (every fit derives its seed from it).")
    )
    if st.rows:
        blocks.append(TAB(st))
    src = "fit records" if versions else "this report's environment"
    versions = versions or prov.package_versions()
    commit = commit or prov.git_commit(ctx.config_path.resolve().parent)
    blocks.append(P(f"Git commit: <code>{escape(commit)}</code>. Package versions ({src}):"))
    blocks.append(TAB(Table(["Package", "Version"], [[k, str(v)] for k, v in versions.items()])))
    text = ctx.config_path.read_text() if ctx.config_path.is_file() else "(config file not found)"
    blocks.append(P(f"Trial configuration: <code>{escape(str(ctx.config_path))}</code>"))
    blocks.append({"kind": "pre", "text": text})
    return Section("provenance", "Provenance", blocks)


def logs(ctx: Context) -> Section:
    if not ctx.logs:
        return Section("logs", "Logs", [NOTE("No step logs were given to the report.")])
    items = []
    for p in ctx.logs:
        p = Path(p)
        status = "" if p.is_file() else " (missing)"
        items.append(Markup(f"<a href='{escape(ctx.rel(p))}'>{escape(p.name)}</a>{escape(status)}"))
    return Section(
        "logs",
        "Logs",
        [P("Each workflow step's log (links relative to this page):"), {"kind": "list", "items": items}],
    )

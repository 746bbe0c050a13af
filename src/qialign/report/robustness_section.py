# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""Robustness: would another reasonable analysis change the answer? (``<outcome>/robustness/``)

Per battery outcome: the verdict in words, a forest plot of the primary and every variant, the
variants' table, the permutation and placebo checks, and the power-scaling prior sensitivity.
"""

from __future__ import annotations

import pandas as pd
from markupsafe import escape

from qialign.report import figures
from qialign.report.blocks import FIG, H3, NOTE, TAB, P, Section, slug
from qialign.report.context import Context, read_csv, read_json
from qialign.report.tables import DASH, Table, is_missing, num
from qialign.robustness.battery import battery_outcomes
from qialign.robustness.files import ROBUSTNESS_DIR, ROBUSTNESS_FILES
from qialign.robustness.verdict import VERDICT_ESTIMANDS


def _files(ctx: Context, outcome: str) -> dict:
    folder = ctx.results / outcome / ROBUSTNESS_DIR
    return {
        key: (read_json if name.endswith(".json") else read_csv)(folder / name)
        for key, name in ROBUSTNESS_FILES.items()
    }


def _forest(ctx: Context, outcome: str, variants: pd.DataFrame) -> dict:
    effect = variants[variants["estimand"] == VERDICT_ESTIMANDS[0]]
    labels = [
        f"{m} (primary)" if a == "primary" else f"{m}"
        for m, a in zip(effect["model"], effect["aspect"], strict=True)
    ]
    scale = str(effect["scale"].iloc[0])
    src = figures.forest(
        labels,
        effect["estimate"].to_numpy(float),
        effect["lower"].to_numpy(float),
        effect["upper"].to_numpy(float),
        f"treatment effect ({scale})",
        null=0.0,
        log=False,
        better=ctx.better(outcome),
    )
    caption = f"{ctx.label(outcome)}: the treatment effect under the primary model and each variant ({ctx.interval_code} intervals, {escape(scale)} scale)."
    return FIG(src, caption, f"forest plot of the robustness variants of {outcome}")


def _variants_table(variants: pd.DataFrame) -> Table:
    t = Table(
        [
            "Model",
            "Changes",
            "Estimand",
            "Estimate",
            "Lower",
            "Upper",
            "Reliable",
            "Disagrees with the primary",
        ],
        [],
        numeric={3, 4, 5},
    )
    for r in variants.to_dict("records"):
        t.rows.append(
            [str(r["model"]), "primary model" if r["aspect"] == "primary" else str(r["label"]), str(r["estimand"]),
             num(r["estimate"], 3), num(r["lower"], 3), num(r["upper"], 3), "yes" if r["reliable"] else "NO",
             str(r["disagrees"]) if not is_missing(r["disagrees"]) and r["disagrees"] else "no"]
        )  # fmt: skip
        t.row_classes.append("bad" if not is_missing(r["disagrees"]) and r["disagrees"] else "")
    return t


def _inference_table(inference: pd.DataFrame) -> Table:
    t = Table(
        ["Check", "What", "Estimate", "p", "Lower", "Upper", "Assignments", "Note"],
        [],
        numeric={2, 3, 4, 5, 6},
    )
    for r in inference.to_dict("records"):
        kind = DASH if is_missing(r["exact"]) else ("all" if bool(r["exact"]) else "random")
        assignments = DASH if is_missing(r["assignments"]) else f"{int(r['assignments'])} ({kind})"
        t.rows.append(
            [str(r["check"]).replace("_", " "), str(r["description"]), num(r["estimate"], 3), num(r["p_value"], 3),
             num(r["lower"], 3), num(r["upper"], 3), assignments, "" if is_missing(r["note"]) else str(r["note"])]
        )  # fmt: skip
    return t


def _sensitivity_table(sens: pd.DataFrame) -> Table:
    t = Table(
        [
            "Parameter",
            "Prior sensitivity",
            "Likelihood sensitivity",
            "Diagnosis",
            "Pareto k (prior / likelihood)",
        ],
        [],
        numeric={1, 2},
    )
    for r in sens.to_dict("records"):
        k = f"{num(r['pareto_k_prior'], 2)} / {num(r['pareto_k_likelihood'], 2)}"
        t.rows.append(
            [
                str(r["parameter"]),
                num(r["prior"], 3),
                num(r["likelihood"], 3),
                str(r["diagnosis"]),
                k + ("" if r["reliable"] else " (unreliable)"),
            ]
        )
        t.row_classes.append("bad" if str(r["diagnosis"]).startswith(("prior", "weak")) else "")
    return t


def _outcome_blocks(ctx: Context, outcome: str) -> list:
    got = _files(ctx, outcome)
    blocks = [H3(ctx.label(outcome), f"robustness-{slug(outcome)}")]
    if any(v is None for v in got.values()):
        ctx.flag(
            "Robustness",
            f"{outcome}: robustness results missing (results/{ctx.trial}/{outcome}/{ROBUSTNESS_DIR}/)",
        )
        return [*blocks, NOTE("Robustness results are missing for this outcome.", "bad")]
    verdict = got["verdict"]
    blocks.append(
        NOTE(f"<strong>Verdict.</strong> {escape(verdict['text'])}", "info" if verdict["stable"] else "bad")
    )
    if not verdict["stable"]:
        ctx.flag("Robustness", f"{outcome}: {verdict['text']}")
    if len(got["variants"]):
        blocks += [_forest(ctx, outcome, got["variants"]), TAB(_variants_table(got["variants"]))]
    if verdict["skipped"]:
        items = "; ".join(
            f"{s['aspect'].replace('_', ' ')} {s['alternative']}: {s['reason']}" for s in verdict["skipped"]
        )
        blocks.append(P(f"Not fitted (not identified by this design): {escape(items)}."))
    blocks += [P("<strong>Permutation and placebo checks.</strong>"), TAB(_inference_table(got["inference"]))]
    blocks += [
        P("<strong>Prior sensitivity</strong> of the primary model (power-scaling, no refit):"),
        TAB(_sensitivity_table(got["sensitivity"])),
    ]
    return blocks


def robustness(ctx: Context) -> Section:
    outcomes = battery_outcomes(ctx.cfg)
    lead = (
        "Would another reasonable analysis change the answer? The primary model is refitted with one aspect changed at a time "
        "(secular trend, exposure time, cluster-period correlation, cluster-specific effects, transition periods, covariate "
        "adjustment). A variant <em>disagrees</em> when its interval lies on another side of zero than the primary's or its "
        "estimate falls outside the primary's interval; the conclusion is stable when no reliable variant disagrees on the effect. "
        "The permutation test re-assigns clusters to the trial's sequences and re-estimates with a fixed-effects model of "
        "cluster-period summaries; its interval inverts the test. Placebo checks should show nothing. Power-scaling "
        "(Kallioinen et al. 2024) perturbs the prior and the likelihood by importance weights: a prior sensitivity above "
        f"{ctx.cfg['robustness']['sensitivity_threshold']:g} means the prior, not the data, drives the parameter."
    )
    if not outcomes:
        return Section(
            "robustness", "Robustness", [P("The robustness battery is off (robustness.enabled: false).")]
        )
    blocks = [P(lead)]
    for outcome in outcomes:
        blocks += _outcome_blocks(ctx, outcome)
    return Section("robustness", "Robustness", blocks)

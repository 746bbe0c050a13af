# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""CONSORT extension for stepped-wedge cluster trials (Hemming et al., BMJ 2018;363:k1614).

The flow of clusters and participants by sequence and period (allocated from ``data.json``,
analysed from the prepare step's cells via :func:`design_section.cell_matrix`, excluded and why from
``prepared.json``), the ICC and CAC of each outcome's primary model with intervals
(``estimates.csv`` rows ``icc`` / ``cac``), the estimand definitions, and an appendix table mapping
each checklist item to the section of this page that answers it.
"""

from __future__ import annotations

import numpy as np
from markupsafe import Markup, escape

from qialign.report import estimates as E
from qialign.report.blocks import H3, LIST, NOTE, TAB, P, Section, plural
from qialign.report.context import Context
from qialign.report.design_section import CellMatrix, cell_matrix
from qialign.report.tables import DASH, Table, is_missing

#: the control sequence's label (clusters that never start)
NEVER = "never (control)"

ESTIMANDS = [
    "<strong>Effect beyond the secular trend</strong> (treatment_effect): the contrast between the intervention and control conditions in the same cluster and period, on the link scale, at the clusters' mean alignment and adjusted for calendar time; conditional on the cluster (a cluster-specific effect).",
    "<strong>Natural scale</strong> (treatment_effect_natural): the same on the odds-ratio, rate-ratio, ratio-of-means or difference scale.",
    "<strong>Average absolute effect</strong> (marginal_difference): the population-averaged difference, by standardisation over the analysed cluster-periods.",
    "<strong>P(beats the trend)</strong> (prob_beats_trend): the posterior probability that the effect lies in the better direction.",
    "<strong>Alignment moderation</strong> (alignment_interaction): the change of the link-scale effect per SD of clinical-managerial alignment.",
]

#: (item, topic, where this page answers it: a section id, or text saying why not)
CHECKLIST = [
    ("1a", "Identification as a stepped-wedge cluster trial in the title", "#design"),
    ("1b", "Structured summary", "#plain-summary"),
    ("2a", "Rationale for a stepped-wedge design", "not applicable: the trial's protocol"),
    ("2b", "Objectives and hypotheses", "#summary"),
    ("3a", "Design: sequences, periods, schematic", "#design"),
    ("3b", "Changes to methods after commencement", "not applicable: the trial's protocol"),
    ("4a", "Eligibility of clusters and participants", "not applicable: the trial's protocol"),
    ("4b", "Settings and locations", "#design"),
    ("5", "Interventions, including timing of the switch", "#design"),
    ("6a", "Outcomes and when they were assessed", "#baseline"),
    ("7a", "Sample size, with the ICC / CAC assumed", "#planning"),
    (
        "8-10",
        "Randomisation of sequences, concealment, implementation",
        "not applicable: the trial's protocol",
    ),
    ("11", "Blinding", "not applicable: the trial's protocol"),
    ("12a", "Statistical methods: time, clustering, correlation structure", "#methods"),
    ("12b", "Additional analyses", "#model-checks"),
    ("13a", "Flow of clusters and participants by sequence and period", "#consort-flow"),
    ("13b", "Losses and exclusions after allocation, with reasons", "#consort-flow"),
    ("14a", "Periods of recruitment and follow-up", "#design"),
    ("15", "Baseline data by condition and sequence", "#baseline"),
    ("16", "Numbers analysed per condition", "#baseline"),
    ("17a", "Effect per outcome with precision; ICC / CAC with intervals", "#effects"),
    ("17b", "Absolute and relative effects for binary outcomes", "#summary"),
    ("18", "Ancillary analyses (effect modification, time trends)", "#alignment"),
    ("19", "Harms", "not applicable: not recorded in the analysis data"),
    ("20-22", "Limitations, generalisability, interpretation", "not applicable: the trial's publication"),
    ("23-25", "Registration, protocol, funding", "not applicable: the trial's publication"),
]
CHECKLIST_TITLES = {"#" + s: t for s, t in (
    ("design", "Design"), ("plain-summary", "In plain words"), ("summary", "Summary"), ("baseline", "Baseline table"),
    ("planning", "Planning"), ("methods", "Methods"), ("model-checks", "Model checks"), ("consort-flow", "CONSORT-SW flow"), ("spc", "Control charts"),
    ("effects", "Effects"), ("alignment", "Alignment"),
)}  # fmt: skip


def start_periods(ctx: Context) -> dict:
    """Cluster id -> its first period under the intervention (None: never starts), from data.json."""
    return {
        str(c["cluster"]): c.get("start_period") for c in (ctx.json("data.json") or {}).get("clusters") or []
    }


def sequences(m: CellMatrix, starts: dict) -> list[tuple[str, list[int]]]:
    """(label, row indices of m) per sequence: clusters grouped by their start period, controls last."""
    groups: dict = {}
    for i, (c, _) in enumerate(m.names):
        s = starts.get(c)
        groups.setdefault(None if is_missing(s) else s, []).append(i)
    keys = sorted(k for k in groups if k is not None) + ([None] if None in groups else [])
    return [(NEVER if k is None else f"starts in period {k}", groups[k]) for k in keys]


def flow_table(ctx: Context, m: CellMatrix) -> Table:
    """Clusters allocated / analysed and participants analysed per sequence x period (bold: under
    the intervention)."""
    cols = [
        "Sequence",
        "Clusters allocated",
        "Clusters analysed",
        *[f"P{t}" for t in m.periods],
        "Excluded: outcome missing",
        "covariate missing",
    ]
    t = Table(cols, [], numeric=set(range(1, len(cols))))
    lost = excluded_by_cluster(ctx, m.source)
    for label, rows in sequences(m, start_periods(ctx)):
        ids = [m.names[i][0] for i in rows]
        excluded = [ctx.count(sum(lost.get(c, (0, 0))[k] for c in ids), m.table) for k in (0, 1)]
        analysed = [i for i in rows if np.isfinite(m.n[i]).any()]
        cells = []
        for j in range(len(m.periods)):
            n = m.n[rows, j]
            total = np.nansum(n) if np.isfinite(n).any() else np.nan
            text = ctx.count(total, m.table)
            on = np.nanmax(m.treated[rows, j]) == 1 if np.isfinite(m.treated[rows, j]).any() else False
            cells.append(Markup(f"<strong>{escape(text)}</strong>") if on else text)
        t.rows.append([label, str(len(rows)), str(len(analysed)), *cells, *excluded])
    what = "patients" if ctx.people(m.table) else "units"
    t.caption = f"Clusters by sequence, and {what} analysed per period for “{ctx.label(m.source)}” (bold: under the intervention)."
    if ctx.people(m.table):
        t.caption += f" Counts under {ctx.below} are shown as “<{ctx.below}”."
    return t


def excluded_by_cluster(ctx: Context, outcome: str) -> dict[str, tuple[int, int]]:
    """Cluster -> (rows excluded for a missing outcome, for a missing covariate), from the prepare
    step's per cluster-period record (``prepared.json`` exclusions ``by_cell``)."""
    e = (ctx.json(outcome, "prepared.json") or {}).get("exclusions") or {}
    out: dict[str, tuple[int, int]] = {}
    for r in e.get("by_cell") or []:
        a, b = out.get(str(r["cluster"]), (0, 0))
        out[str(r["cluster"])] = (a + r["missing_outcome"], b + r["missing_covariate"])
    return out


def exclusions(ctx: Context) -> list[str]:
    """One line per outcome: rows read, excluded with reasons, analysed (the prepare step's record)."""
    items = []
    for outcome in ctx.outcomes:
        e = (ctx.json(outcome, "prepared.json") or {}).get("exclusions") or {}
        if not e:
            items.append(f"{escape(ctx.label(outcome))}: no prepare record.")
            continue

        def n(key, e=e) -> str:
            return escape(ctx.count(e.get(key), e.get("table")))

        items.append(
            f"{escape(ctx.label(outcome))}: {n('read')} rows read from the {escape(str(e.get('table')))} table; excluded {n('missing_outcome')} "
            f"with a missing outcome and {n('missing_covariate')} with a missing covariate; {n('analysed')} analysed."
        )
    return items


def correlations(ctx: Context) -> Table:
    """ICC and CAC of each outcome's primary model, with their intervals."""
    t = Table(
        ["Outcome", "Model", "ICC (latent scale)", "CAC"],
        [],
        caption="Within-period intra-cluster correlation (ICC) and cluster autocorrelation (CAC, the correlation of a cluster's period means over time) of the primary model.",
    )
    for outcome in ctx.outcomes:
        model = ctx.primary(outcome)
        est = ctx.estimates(outcome, model)
        t.rows.append([ctx.label(outcome), model, *(E.interval_text(E.row(est, k)) for k in ("icc", "cac"))])
    return t


def checklist() -> Table:
    t = Table(
        ["Item", "CONSORT-SW topic", "Where this report answers it"],
        [],
        caption="CONSORT extension for stepped-wedge cluster randomised trials (Hemming et al., BMJ 2018;363:k1614): items and where they are answered. Items the analysis data cannot answer are marked not applicable and belong to the trial's protocol or publication.",
    )
    for item, topic, where in CHECKLIST:
        cell = (
            Markup(f"<a href='{where}'>{escape(CHECKLIST_TITLES[where])}</a>")
            if where.startswith("#")
            else where
        )
        t.rows.append([item, topic, cell])
    return t


def consort(ctx: Context) -> Section:
    m = cell_matrix(ctx)
    blocks = [*_not_stepped_wedge(ctx), H3("Flow of clusters and participants", "consort-flow")]
    if m.names and m.periods and m.source:
        sequences_n = len(sequences(m, start_periods(ctx)))
        blocks.append(
            P(
                f"{plural(len(m.names), 'cluster')} in {plural(sequences_n, 'sequence')} over {plural(len(m.periods), 'period')}; the design schematic is in <a href='#design'>Design</a>."
            )
        )
        blocks.append(TAB(flow_table(ctx, m)))
    else:
        blocks.append(P(f"No prepared cells: the flow by sequence and period cannot be shown ({DASH})."))
    blocks += [P("Exclusions (complete cases per outcome):"), LIST(exclusions(ctx))]
    blocks += [H3("Intra-cluster and cluster autocorrelation"), TAB(correlations(ctx))]
    blocks += [H3("Estimands"), LIST(ESTIMANDS)]
    lead = "Items of the CONSORT extension for stepped-wedge cluster trials (Hemming et al., BMJ 2018) that the analysis answers."
    return Section("consort", "CONSORT-SW items", blocks, lead)


def _not_stepped_wedge(ctx: Context) -> list[dict]:
    if ctx.design == "stepped_wedge":
        return []
    return [
        NOTE(
            f"This trial is a {escape(ctx.design.replace('_', ' '))}, not a stepped-wedge trial: the items are shown as a guide to what the report covers."
        )
    ]


def consort_checklist(ctx: Context) -> Section:
    """The appendix: each CONSORT-SW item and where this page answers it."""
    return Section(
        "consort-checklist", "Appendix: CONSORT-SW checklist", [*_not_stepped_wedge(ctx), TAB(checklist())]
    )

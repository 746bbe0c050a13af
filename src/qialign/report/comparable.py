"""The table that sets a Bayesian estimate beside a frequentist one only when both estimate the
same quantity (``comparable_to`` in ``estimates.csv``; ``qialign.results.comparable_estimand``)."""

from __future__ import annotations

from qialign.report import estimates as E
from qialign.report.blocks import NOTE, TAB, P
from qialign.report.tables import Table

COMPARABLE_NOTE = (
    "Only rows that estimate the same quantity sit side by side here. A GEE (or cluster-robust GLM) "
    "estimates a population-averaged effect, marginal over the cluster and cluster-period effects; on "
    "a logit or log link it is compared with the Bayesian population-averaged effect for a new cluster, "
    "not with the conditional (cluster-specific) θ, which is a different quantity (on a logit link "
    "further from the null)."
)


def comparable_blocks(cc, est, model: str) -> list[dict]:
    """The note and a table of Bayesian row | its estimate | frequentist method | its estimate, for
    every comparable pair; a note when no cross-check estimates a quantity the model reports."""
    pairs = E.comparable_pairs(cc, est)
    if not pairs:
        return [NOTE("No frequentist cross-check estimates a quantity that the Bayesian model reports.")]
    t = Table(
        ["Quantity (Bayesian estimand)", "What it is", f"Bayesian, {model}", "Frequentist", "Estimate"],
        [],
        caption="Comparable estimates: each row is one quantity estimated two ways.",
    )
    for method, freq, bayes in pairs:
        t.rows.append(
            [
                f"{bayes.name} ({bayes['scale']})",
                E.kind_text(bayes),
                E.interval_text(bayes),
                E.method_label(method),
                E.interval_text(freq, bayesian=False),
            ]
        )
        t.row_classes.append("")
    return [P(COMPARABLE_NOTE), TAB(t)]

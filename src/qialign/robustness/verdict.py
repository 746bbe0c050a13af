"""The verdict of the battery: does another reasonable model change the answer?

The rule, defined here once: a variant *disagrees* with the primary on an estimand (the effect
theta, the alignment interaction gamma) when

1. its interval lies on another side of zero than the primary's (above, below, or spanning zero:
   the conclusion changes), or
2. its point estimate lies outside the primary's interval (the size changes beyond the primary's
   own uncertainty).

The conclusion is *stable* when at least one variant is reliable and no reliable variant
disagrees on the effect; otherwise it
*depends on* the aspects of the disagreeing variants. An unreliable variant (failed diagnostics,
or a term the data do not identify) is shown but does not decide the verdict.
"""

from __future__ import annotations

import math

import pandas as pd

#: the estimands the rule is applied to, in the order the verdict names them
VERDICT_ESTIMANDS = ("treatment_effect", "alignment_interaction")


def side_of_zero(lower: float, upper: float) -> str:
    """``above zero``, ``below zero`` or ``spans zero`` for an interval."""
    if lower > 0:
        return "above zero"
    if upper < 0:
        return "below zero"
    return "spans zero"


def disagreement(primary: dict, variant: dict) -> str:
    """Why ``variant`` disagrees with ``primary`` (rows with estimate, lower, upper), or ''."""
    values = [primary[k] for k in ("estimate", "lower", "upper")] + [variant["estimate"]]
    if any(v is None or math.isnan(v) for v in values):
        return ""
    ours, theirs = (
        side_of_zero(primary["lower"], primary["upper"]),
        side_of_zero(variant["lower"], variant["upper"]),
    )
    if ours != theirs:
        return f"interval {theirs} (primary: {ours})"
    if not primary["lower"] <= variant["estimate"] <= primary["upper"]:
        return f"estimate {variant['estimate']:.3g} outside the primary's interval"
    return ""


def compare(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (VARIANT_COLUMNS rows, the primary's with aspect ``primary``) with ``disagrees``
    filled per estimand by :func:`disagreement`."""
    out = table.copy()
    out["disagrees"] = ""
    for _, rows in table.groupby("estimand", sort=False):
        primary = rows[rows["aspect"] == "primary"]
        if primary.empty:
            continue
        ref = primary.iloc[0].to_dict()
        for i, row in rows[rows["aspect"] != "primary"].iterrows():
            out.loc[i, "disagrees"] = disagreement(ref, row.to_dict())
    return out


def verdict(compared: pd.DataFrame) -> dict:
    """``{"stable": bool, "depends_on": [aspects], "text": words}`` from :func:`compare`'s table."""
    effect = compared[(compared["estimand"] == VERDICT_ESTIMANDS[0]) & (compared["aspect"] != "primary")]
    decisive = effect[effect["reliable"].astype(bool) & (effect["disagrees"] != "")]
    aspects = list(dict.fromkeys(decisive["aspect"]))
    unreliable = sorted(effect.loc[~effect["reliable"].astype(bool), "model"])
    reliable = effect[effect["reliable"].astype(bool)]
    if reliable.empty:
        text = "No reliable variant was fitted: the battery cannot say whether the conclusion is stable."
    elif not aspects:
        text = (
            f"Conclusion stable: none of the {len(reliable)} reliable variants changes the effect's side "
            "of zero or moves it outside the primary's interval."
        )
    else:
        names = "; ".join(f"{r.model}: {r.disagrees}" for r in decisive.itertuples())
        text = f"Conclusion depends on {', '.join(a.replace('_', ' ') for a in aspects)} ({names})."
    if unreliable:
        text += f" Not counted (failed diagnostics or not identified): {', '.join(unreliable)}."
    return {"stable": not aspects and not reliable.empty, "depends_on": aspects, "text": text}

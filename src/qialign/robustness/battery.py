"""The robustness battery: the primary model of an outcome refitted with one aspect changed.

Each variant is a ``models:`` entry (the primary's, schema-filled, with one change) fitted by the
ordinary fit step as its own job, under the id ``<primary>_<variant>``. Only the alternatives the
design identifies are fitted; the others are listed with the reason (:class:`Skipped`). Which
alternatives exist is decided from the design and the config alone, so that the workflow knows
the jobs before any data is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from qialign.config import models_for
from qialign.errors import QialignError
from qialign.models.spec import resolved_auto

ITS = "interrupted_time_series"

#: trend -> words
TRENDS = {
    "period": "categorical period effects",
    "linear": "linear trend",
    "rw1": "smooth (random-walk) trend",
    "spline": "spline trend",
}
#: exposure -> words
EXPOSURES = {"step": "immediate step", "eti": "exposure-time indicators (TATE)", "ramp": "linear ramp"}
#: cluster_period -> words
CLUSTER_PERIODS = {"exchangeable": "exchangeable cluster-period effects", "ar1": "AR(1) cluster-period decay"}


@dataclass(frozen=True)
class Variant:
    """One refit of the primary: its aspect, model id, words and the changed model keys."""

    aspect: str
    id: str
    label: str
    changes: dict


@dataclass(frozen=True)
class Skipped:
    """An alternative of an aspect that is not fitted, and why."""

    aspect: str
    alternative: str
    reason: str


def battery_outcomes(cfg: dict) -> list[str]:
    """The outcomes the battery runs for: ``robustness.outcomes``, else the first outcome; none
    when ``robustness.enabled`` is false."""
    rob = cfg["robustness"]
    if not rob["enabled"]:
        return []
    unknown = [o for o in rob["outcomes"] if o not in cfg["outcomes"]]
    if unknown:
        raise QialignError(
            f"{cfg['id']}: robustness.outcomes names {', '.join(unknown)}, not an outcome of the trial "
            f"(outcomes: {', '.join(cfg['outcomes'])})"
        )
    return list(rob["outcomes"]) or [next(iter(cfg["outcomes"]))]


def _table(cfg: dict, outcome: str) -> str:
    """Where the outcome is recorded, as far as the config says (patients when that table exists)."""
    declared = cfg["outcomes"][outcome].get("table")
    return declared or ("patients" if "patients" in cfg["data"] else "cluster_periods")


def _trend(p: dict, design: str) -> tuple[list, list]:
    if design == ITS:
        why = "one series: {} would absorb the level change"
        skipped = [Skipped("trend", t, why.format(TRENDS[t])) for t in ("period", "rw1")]
        alt = "spline" if p["trend"] != "spline" else "linear"
        return [(alt, {"trend": alt}, TRENDS[alt])], skipped
    return [(t, {"trend": t}, TRENDS[t]) for t in ("period", "linear", "rw1") if t != p["trend"]], []


def _exposure(p: dict, design: str) -> tuple[list, list]:
    skipped = []
    alts = [e for e in EXPOSURES if e != p["exposure"]]
    if design == ITS and "eti" in alts:
        alts.remove("eti")
        skipped.append(
            Skipped("exposure", "eti", "one series: an effect per exposure time fits every post period")
        )
    return [(e, {"exposure": e}, EXPOSURES[e]) for e in alts], skipped


def _cluster_period(p: dict, design: str) -> tuple[list, list]:
    now = p["cluster_period"]
    if now == "none":
        why = "negative-binomial counts per cell: the gamma mixing already is the cluster-period effect"
        return [], [Skipped("cluster_period", "ar1", why)]
    if design == ITS and now == "ar1":
        why = "one series: an exchangeable effect per period is an observation-level effect"
        return [], [Skipped("cluster_period", "exchangeable", why)]
    alt = "ar1" if now == "exchangeable" else "exchangeable"
    return [(alt, {"cluster_period": alt}, CLUSTER_PERIODS[alt])], []


def _random_treatment(p: dict, design: str) -> tuple[list, list]:
    if design == ITS:
        return [], [
            Skipped("random_treatment", "on", "one series has no between-cluster spread of the effect")
        ]
    on = not p["random_treatment"]
    words = "cluster-specific treatment effects " + ("on" if on else "off")
    return [("on" if on else "off", {"random_treatment": on}, words)], []


def _transition(p: dict, design: str) -> tuple[list, list]:
    if p["exclude_transition"]:
        return [("kept", {"exclude_transition": False}, "transition periods kept")], []
    return [("excluded", {"exclude_transition": True}, "first period after each start excluded")], []


def _covariates(p: dict, cfg: dict, table: str) -> tuple[list, list]:
    if not cfg["covariates"]:
        return [], [Skipped("covariates", "unadjusted", "the trial adjusts for no covariates")]
    if table == "cluster_periods":
        return [], [Skipped("covariates", "unadjusted", "recorded per cluster-period: no patient covariates")]
    on = not p["covariates"]
    return [("adjusted" if on else "unadjusted", {"covariates": on}, "adjusted" if on else "unadjusted")], []


def _variant_id(primary: str, aspect: str, alternative: str) -> str:
    """``hh_trend_linear``, ``hh_cp_ar1``, ``hh_rte_on``, ``hh_transition_excluded``, ..."""
    short = {"cluster_period": "cp", "random_treatment": "rte", "transition": "transition"}
    return f"{primary}_{short.get(aspect, aspect)}_{alternative}"


def battery(cfg: dict, outcome: str) -> tuple[list[Variant], list[Skipped]]:
    """The variants of ``outcome``'s primary model (its first ``models:`` entry) for the aspects of
    ``robustness.aspects``, and the alternatives skipped with their reasons."""
    primary = models_for(cfg, outcome)[0]
    table = _table(cfg, outcome)
    p = resolved_auto(primary, cfg["design"], cfg["outcomes"][outcome]["family"], table)
    design = cfg["design"]
    found = {
        "trend": lambda: _trend(p, design),
        "exposure": lambda: _exposure(p, design),
        "cluster_period": lambda: _cluster_period(p, design),
        "random_treatment": lambda: _random_treatment(p, design),
        "transition": lambda: _transition(p, design),
        "covariates": lambda: _covariates(p, cfg, table),
    }
    variants, skipped = [], []
    taken = {m["id"] for m in cfg["models"]}
    for aspect in cfg["robustness"]["aspects"]:
        alts, skip = found[aspect]()
        skipped += skip
        for alternative, changes, words in alts:
            vid = _variant_id(primary["id"], aspect, alternative)
            if vid in taken:
                raise QialignError(
                    f"{cfg['id']}: model id '{vid}' is taken by the robustness battery; rename it"
                )
            variants.append(Variant(aspect, vid, words, changes))
    return variants, skipped


def variant_model(cfg: dict, outcome: str, variant: Variant) -> dict:
    """The ``models:`` entry of one variant: the primary's with the variant's changes."""
    primary = models_for(cfg, outcome)[0]
    label = f"{primary['id']} with {variant.label}"
    return {**primary, **variant.changes, "id": variant.id, "label": label}


def variant_models(cfg: dict, outcome: str) -> list[dict]:
    """The ``models:`` entries of every variant of ``outcome`` (none outside the battery)."""
    if outcome not in battery_outcomes(cfg):
        return []
    return [variant_model(cfg, outcome, v) for v in battery(cfg, outcome)[0]]


def without_transition(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells without each cluster's first treated period (exposure_time 1)."""
    return cells[cells["exposure_time"] != 1].reset_index(drop=True)

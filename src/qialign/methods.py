"""The estimation methods: one registry (method id -> what it is), the ``method`` values of
``estimates.csv`` and ``crosscheck.csv``. Pure python (the report imports it).

Bayesian rows name the alignment propagation of their fit (``bayes`` = plugin, ``bayes_draws``,
``bayes_joint``); frequentist rows the cross-check (:mod:`qialign.frequentist`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: sandwich corrections of the GEE: model-robust (Liang-Zeger), Kauermann-Carroll, Mancl-DeRouen,
#: Fay-Graubard (:mod:`qialign.frequentist.sandwich`)
SE_KINDS = {
    "robust": "robust SE",
    "kc": "Kauermann-Carroll SE",
    "md": "Mancl-DeRouen SE",
    "fg": "Fay-Graubard SE",
}
CORSTRS = ("exchangeable", "nested_exchangeable")
APPROACHES = ("bayesian", "frequentist")
#: what an effect is averaged over: ``conditional`` (cluster-specific: given a cluster's random
#: effects) or ``population-averaged`` (marginal over the random effects, as a GEE estimates it)
CONDITIONAL, POPULATION_AVERAGED = "conditional", "population-averaged"


@dataclass(frozen=True)
class Method:
    """One method: id (the ``method`` column), approach, label for people, the kind of its
    standard error or posterior, the design it needs (``any``; ``concurrent``: controls in the
    same periods; ``its``: a time series; ``synthesis``: several trials' results) and, for a
    frequentist method, whether its effects are conditional or population-averaged (Bayesian rows
    say it per estimand)."""

    id: str
    approach: str
    label: str
    se: str
    design: str
    correlation: str = ""  # a GEE's working correlation
    regression: str = ""  # a segmented regression's model: quasi-Poisson or OLS
    conditioning: str = POPULATION_AVERAGED  # a frequentist method's effects: CONDITIONAL or not


def _freq(id: str, label: str, se: str, design: str, **parts: str) -> Method:
    return Method(id, "frequentist", label, se, design, **parts)


def _gee(corstr: str, se: str) -> Method:
    label = f"GEE, {corstr.replace('_', ' ')}, {SE_KINDS[se]}"
    return _freq(f"gee_{corstr}_{se}", label, se, "concurrent", correlation=corstr)


def _segmented(regression: str, se: str) -> Method:
    tag = {"quasi-Poisson": "quasipoisson", "OLS": "ols"}[regression]
    if se == "newey-west":
        return _freq(f"its_{tag}_newey_west", f"Segmented regression, {regression}, Newey-West SE", se, "its",
                     regression=regression)  # fmt: skip
    return _freq(
        f"its_{tag}", f"Segmented regression, {regression} (model SE)", se, "its", regression=regression
    )


#: alignment propagation -> method id of the Bayesian rows
BAYESIAN_METHODS = {"plugin": "bayes", "draws": "bayes_draws", "joint": "bayes_joint"}

METHODS: dict[str, Method] = {
    m.id: m
    for m in (
        Method("bayes", "bayesian", "Bayesian, alignment plugged in", "posterior", "any"),
        Method("bayes_draws", "bayesian", "Bayesian, over alignment draws", "posterior", "any"),
        Method("bayes_joint", "bayesian", "Bayesian, joint with the survey model", "posterior", "any"),
        _freq(
            "mixedlm",
            "Linear mixed model (t, clusters - p df)",
            "model",
            "concurrent",
            conditioning=CONDITIONAL,
        ),  # fmt: skip
        *(_gee(c, k) for c in CORSTRS for k in SE_KINDS),
        _freq("glm_cluster_robust", "GLM, cluster-robust SE", "cr1", "concurrent"),
        *(_segmented(r, se) for r in ("quasi-Poisson", "OLS") for se in ("model", "newey-west")),
        # a family segmented regression does not cover: one row of NaN with the reason
        _freq("its_segmented", "Segmented regression (not fitted)", "none", "its"),
        # synthesis across trials (qialign.synthesis): per-ward effects regressed on alignment
        Method(
            "bayes_synthesis", "bayesian", "Bayesian synthesis, errors-in-variables", "posterior", "synthesis"
        ),
        _freq(
            "meta_regression_reml_kh", "Meta-regression, REML, Knapp-Hartung", "knapp-hartung", "synthesis"
        ),
    )
}


def gee_method(corstr: str, se: str) -> str:
    """The method id of a GEE with working correlation ``corstr`` and sandwich ``se``."""
    return _gee(corstr, se).id


def label(method: str) -> str:
    """Human label of a method id (the id itself when unknown)."""
    m = METHODS.get(method)
    return m.label if m is not None else method

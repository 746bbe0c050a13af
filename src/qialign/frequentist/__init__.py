"""Frequentist cross-checks: GEE with small-sample corrected sandwiches, MixedLM, CR GLM.

Public API: :func:`cross_check` (the table the pipeline writes), :func:`fit_gee` (core GEE,
geeCRT-compatible), :func:`sandwich_covariances` (MB, BC0-BC3), :func:`fit_mixedlm`,
:func:`fit_glm_cluster_robust`, :func:`build_design`.
"""

from .crosscheck import COLUMNS, METHODS, cross_check
from .design import Design, build_design
from .gee import GEEResult, fit_gee
from .glm import GLMResult, fit_glm_cluster_robust
from .mixed import MixedResult, fit_mixedlm, fit_mixedlm_cells
from .sandwich import SANDWICH_KINDS, sandwich_covariances, sandwich_from_scores

__all__ = [
    "COLUMNS",
    "METHODS",
    "SANDWICH_KINDS",
    "Design",
    "GEEResult",
    "GLMResult",
    "MixedResult",
    "build_design",
    "cross_check",
    "fit_gee",
    "fit_glm_cluster_robust",
    "fit_mixedlm",
    "fit_mixedlm_cells",
    "sandwich_covariances",
    "sandwich_from_scores",
]

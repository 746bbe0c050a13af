"""The results-folder contract: columns of the files that steps write and the report reads.

Defined once here; the producer writes exactly these columns and the reader imports the names,
so a renamed column fails a test instead of silencing the report.
"""

from __future__ import annotations

#: Pareto k above which PSIS-LOO is unreliable for a cell (Vehtari et al. 2024)
PARETO_K_BAD = 0.7

#: ``<outcome>/loo.csv``: one row per model variant, best first (rank 0)
LOO_COLUMNS = (
    "model",  # model id
    "rank",  # 0 = highest elpd
    "elpd",  # expected log predictive density (PSIS-LOO)
    "se",  # its standard error
    "p",  # effective number of parameters p_loo
    "elpd_diff",  # elpd of the best model minus this one's (0 for the best, NaN alone)
    "dse",  # standard error of that difference
    "weight",  # stacking weight (1 alone)
    "n_pareto_k_bad",  # cells with Pareto k > PARETO_K_BAD
    "max_pareto_k",  # largest Pareto k
)

#: ``<outcome>/crosscheck.csv``: the frequentist row the report sets against the Bayesian primary,
#: first present wins: small-sample corrected GEE (Mancl-DeRouen, t on clusters - p df; Li, Turner &
#: Preisser 2018) with the nested correlation, then exchangeable; segmented regression for an ITS
REFERENCE_CROSSCHECKS = (
    "gee_nested_exchangeable_md",
    "gee_exchangeable_md",
    "its_quasipoisson_newey_west",
    "its_quasipoisson",
    "its_ols_newey_west",
    "its_ols",
    "glm_cluster_robust",
)

#: an outcome with fewer events or counts than this under control or under the intervention is
#: flagged: its effect is imprecise and leans on the priors
FEW_EVENTS = 10

#: a cluster whose clinical or managerial survey group has fewer respondents than this is flagged
MIN_ROLE_RESPONDENTS = 3

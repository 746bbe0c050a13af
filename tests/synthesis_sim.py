"""Simulated synthesis inputs with a known cross-trial alignment slope (tests of qialign.synthesis).

Trial i has J_i wards with true alignment x_ij ~ N(nu_i, 1), nu_i ~ N(0, 0.5^2) (one instrument);
true ward effects b_ij = mu + u_i + beta x_ij + e_ij (u ~ N(0, tau_trial^2), e ~ N(0, tau_ward^2));
the trial's ward-effect posterior is m_i ~ MVN(b_i, S_i), S_i = s_c^2 11' + diag(s_j^2) (a shared
component, like the trial's theta, plus ward noise); measured scores a_ij = x_ij + N(0, se_ij^2).
"""

from __future__ import annotations

import numpy as np

TRUTH = {"mu": -0.3, "beta": -0.25, "tau_trial": 0.1, "tau_ward": 0.1}


def simulate_set(seed: int, n_trials: int, wards=(5, 10), se=(0.3, 0.6), truth=TRUTH) -> dict:
    """One set of trials: m, S per trial; a, se, trial_idx per ward; the true slope per pooled SD
    of the measured scores (the synthesis's unit) and the true x."""
    rng = np.random.default_rng(seed)
    m, S, a, s, idx, x_all = [], [], [], [], [], []
    for i in range(n_trials):
        j = int(rng.integers(wards[0], wards[1] + 1))
        x = rng.normal(rng.normal(0, 0.5), 1.0, j)
        b = (
            truth["mu"]
            + rng.normal(0, truth["tau_trial"])
            + truth["beta"] * x
            + rng.normal(0, truth["tau_ward"], j)
        )
        cov = 0.08**2 * np.ones((j, j)) + np.diag(rng.uniform(0.1, 0.25, j) ** 2)
        m.append(rng.multivariate_normal(b, cov))
        S.append(cov)
        se_i = rng.uniform(*se, j)
        a.append(x + rng.normal(0, se_i))
        s.append(se_i)
        idx += [i] * j
        x_all.append(x)
    a = np.concatenate(a)
    return {
        "m": m, "S": S, "a": a, "se": np.concatenate(s), "trial_idx": np.array(idx),
        "beta_per_sd": truth["beta"] * a.std(ddof=1), "x": np.concatenate(x_all),
    }  # fmt: skip

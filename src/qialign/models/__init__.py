"""Bayesian hierarchical outcome models (DESIGN §4) on cluster-period sufficient statistics: the
model spec, the design arrays, the PyMC graph built from its terms, estimands, model checks and
the identification check. Fitting lives in ``qialign.inference``."""

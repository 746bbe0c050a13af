"""Names of the scales each family's estimands are reported on (no heavy imports: the report uses it)."""

LINK_SCALE = {
    "bernoulli": "log-odds",
    "binomial": "log-odds",
    "poisson": "log-rate",
    "negative_binomial": "log-rate",
    "lognormal": "log-mean",
    "gaussian": "mean",
}
NATURAL_SCALE = {
    "bernoulli": "odds ratio",
    "binomial": "odds ratio",
    "poisson": "rate ratio",
    "negative_binomial": "rate ratio",
    "lognormal": "ratio of geometric means",
    "gaussian": "difference",
}
MARGINAL_SCALE = {
    "bernoulli": "risk difference",
    "binomial": "risk difference",
    "poisson": "count per patient difference",
    "negative_binomial": "count per patient difference",
    "lognormal": "mean difference",
    "gaussian": "mean difference",
}

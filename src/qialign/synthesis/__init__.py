"""Synthesis across trials (issue 18): each trial's per-ward effects, from its own fit, pooled on a
common scale and regressed on alignment.

- :mod:`.config`: the ``synthesis:`` block (schema ``synthesis.schema.yaml``) and its checks;
- :mod:`.inputs`: what each trial contributes, read from the files its steps wrote;
- :mod:`.model`: the hierarchical errors-in-variables model (PyMC, nutpie);
- :mod:`.estimands`: pooled effect, slope, variance explained, predictions, P(beats the trend);
- :mod:`.metareg`: REML / Knapp-Hartung meta-regression (the frequentist cross-check);
- :mod:`.run`: one synthesis from arrays.
"""

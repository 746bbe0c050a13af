"""Bayesian inference for the models of ``qialign.models``: compile cache, sampling (nutpie or
PyMC's NUTS) with one retry, pooling of refits, diagnostics and posterior files.

Importing it changes nothing in the process: a sampling entry point calls
:func:`qialign.inference.compile_cache.configure_compile` first.
"""

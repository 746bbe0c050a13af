"""Simulation studies: synthetic trials with a known truth (``simulate``), simulation-based
calibration and simulation-based power of the outcome model (``sbc``, ``ranks``)."""

"""TEMPORARY: ``report/calibration.py`` (being split in another branch) imports these rank
statistics from here; the integrator points it at ``qialign.studies.ranks`` and deletes this file."""

from qialign.studies.ranks import bin_counts, bin_probabilities, ecdf_uniformity

__all__ = ["bin_counts", "bin_probabilities", "ecdf_uniformity"]

"""Clinical-managerial alignment scores from staff surveys."""

from qialign.alignment.descriptive import descriptive_scores, score_items, standardise_over_clusters
from qialign.alignment.latent import LatentFit, alignment_change, draws_matrix, latent_scores
from qialign.alignment.latent_model import build_latent_model, survey_long

__all__ = [
    "LatentFit",
    "alignment_change",
    "build_latent_model",
    "descriptive_scores",
    "draws_matrix",
    "latent_scores",
    "score_items",
    "standardise_over_clusters",
    "survey_long",
]

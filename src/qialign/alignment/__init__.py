"""Clinical-managerial alignment scores from staff surveys."""

from qialign.alignment.descriptive import descriptive_scores, score_items, standardise_over_clusters

__all__ = ["descriptive_scores", "score_items", "standardise_over_clusters"]

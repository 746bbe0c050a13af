"""The data contract (DESIGN.md section 3): read, rename, validate, derive, aggregate, summarise."""

from qialign.data.aggregate import aggregate
from qialign.data.io import read_table, sha256_file
from qialign.data.periods import bin_dates
from qialign.data.prepare import (
    TrialData,
    analysis_rows,
    file_hashes,
    load_trial,
    outcome_covariates,
)
from qialign.data.summary import design_diagram, summarise

__all__ = [
    "TrialData",
    "aggregate",
    "analysis_rows",
    "bin_dates",
    "design_diagram",
    "file_hashes",
    "load_trial",
    "outcome_covariates",
    "read_table",
    "sha256_file",
    "summarise",
]

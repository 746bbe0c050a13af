"""What every section shares: the results folder (read once, cached) and the trial config.

Every config value the report uses is one property or method here, so the typed trial config
can replace the dict in one place.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qialign.config import TrialConfig, models_for, trial_config
from qialign.data.io import read_results_csv, read_results_parquet
from qialign.models.spec import ModelSpec
from qialign.report import estimates as E
from qialign.report.tables import count
from qialign.results import FIT_FILES, FitRecord, interval_label

#: data tables whose rows are people: only their counts are suppressed (disclosure control)
PEOPLE_TABLES = ("patients", "survey")


def read_csv(path: Path) -> pd.DataFrame | None:
    """The table (ids as text), an empty frame for an empty file, or None when the file does not exist."""
    if not path.is_file():
        return None
    try:
        return read_results_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read_parquet(path: Path) -> pd.DataFrame | None:
    return read_results_parquet(path) if path.is_file() else None


@dataclass
class Context:
    """The results folder, the trial config and display options; collects the attention flags."""

    results: Path
    cfg: dict
    config_path: Path
    out_html: Path
    logs: list[Path] = field(default_factory=list)
    attention: list[tuple[str, str]] = field(default_factory=list)
    _cache: dict = field(default_factory=dict)

    # ---- trial config (typed, every default from the schema: qialign.config.TrialConfig) ----------
    @property
    def typed(self) -> TrialConfig:
        if "typed" not in self._cache:
            self._cache["typed"] = trial_config(self.cfg)
        return self._cache["typed"]

    @property
    def trial(self) -> str:
        return self.typed.id

    @property
    def title(self) -> str:
        return self.typed.title or self.typed.id

    @property
    def synthetic(self) -> bool:
        return self.typed.synthetic

    @property
    def design(self) -> str:
        return self.typed.design

    @property
    def seed(self) -> int:
        return self.typed.seed

    @property
    def below(self) -> int:
        """Counts of people from 1 to ``below`` - 1 print as ``<below`` (``report.suppress_below``)."""
        return self.typed.report.suppress_below

    @property
    def thresholds(self) -> dict:
        return dataclasses.asdict(self.typed.diagnostics)

    @property
    def interval_code(self) -> str:
        """``eti95``-style code of the configured interval."""
        return interval_label(self.typed.interval.prob, self.typed.interval.kind)

    @property
    def interval(self) -> dict:
        """``kind`` (eti, hdi) and ``prob`` of the reported intervals."""
        return dataclasses.asdict(self.typed.interval)

    @property
    def alignment_source(self) -> str:
        return self.typed.alignment.source

    @property
    def alignment_on(self) -> bool:
        return self.alignment_source != "none"

    @property
    def alignment_method(self) -> str:
        return self.typed.alignment.method

    @property
    def alignment_wave(self):
        """The configured moderating wave (None: the first scored)."""
        return self.typed.alignment.wave

    @property
    def alignment_propagation(self) -> str:
        return self.typed.alignment.propagation

    @property
    def alignment_domains(self) -> list[str]:
        return list(self.typed.alignment.domains or {})

    @property
    def survey_scale_max(self) -> float:
        """The top of the survey's answer scale (``alignment.scale.max``)."""
        return self.typed.alignment.scale.max

    @property
    def covariates(self) -> list[str]:
        return list(self.typed.covariates)

    @property
    def truth_path(self) -> Path:
        """``truth.json`` next to a simulated trial's data."""
        return Path(self.cfg["data"]["clusters"]).parent / "truth.json"

    @property
    def outcomes(self) -> list[str]:
        return list(self.cfg["outcomes"])

    def outcome_cfg(self, outcome: str) -> dict:
        return self.cfg["outcomes"][outcome]

    def label(self, outcome: str) -> str:
        return self.typed.outcomes[outcome].label or outcome.replace("_", " ")

    def family(self, outcome: str) -> str:
        return self.typed.outcomes[outcome].family

    def better(self, outcome: str) -> str:
        return self.typed.outcomes[outcome].better

    def unit(self, outcome: str) -> str:
        return self.typed.outcomes[outcome].unit

    def exposure(self, outcome: str) -> str | None:
        return self.typed.outcomes[outcome].exposure

    def model_cfgs(self, outcome: str) -> list[dict]:
        return models_for(self.cfg, outcome)

    def models(self, outcome: str) -> list[str]:
        return [m["id"] for m in self.model_cfgs(outcome)]

    def model_cfg(self, model: str) -> dict:
        """A ``models:`` entry by id."""
        return next(m for m in self.cfg["models"] if m["id"] == model)

    @property
    def crosscheck_model(self) -> str:
        """The model whose trend and terms the cross-checks follow (the first in ``models``)."""
        return self.cfg["models"][0]["id"]

    def spec(self, outcome: str, model: str) -> ModelSpec:
        """The model's spec as the fit step built it (covariates and table from ``prepared.json``)."""
        prep = self.json(outcome, "prepared.json") or {}
        trial_cfg = {**self.cfg, "covariates": prep.get("covariates", self.covariates)}
        return ModelSpec.from_config(
            self.model_cfg(model), outcome, self.outcome_cfg(outcome), trial_cfg, table=prep.get("table")
        )

    def primary(self, outcome: str) -> str:
        return self.models(outcome)[0]

    # ---- results folder -----------------------------------------------------------------
    def flag(self, where: str, message: str) -> None:
        if (where, message) not in self.attention:
            self.attention.append((where, message))

    def _get(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def csv(self, *parts: str) -> pd.DataFrame | None:
        return self._get(parts, lambda: read_csv(self.results.joinpath(*parts)))

    def json(self, *parts: str) -> dict | None:
        return self._get(parts, lambda: read_json(self.results.joinpath(*parts)))

    def parquet(self, *parts: str) -> pd.DataFrame | None:
        return self._get(parts, lambda: read_parquet(self.results.joinpath(*parts)))

    def fit(self, outcome: str, model: str) -> FitRecord | None:
        """The fit record (``fit.json``): reliability, the problems the fit found, timings."""
        path = self.results / outcome / model / FIT_FILES["record"]
        return self._get((outcome, model, "record"), lambda: FitRecord.read(path) if path.exists() else None)

    def estimates(self, outcome: str, model: str) -> pd.DataFrame | None:
        """Bayesian estimands of one model indexed by estimand (model folder, else the trial table)."""
        est = self.csv(outcome, model, FIT_FILES["estimates"])
        if est is None:
            return E.bayesian_rows(self.csv("estimates.csv"), outcome, model)
        return E.by_estimand(est) if not est.empty else None

    def crosscheck(self, outcome: str) -> pd.DataFrame | None:
        """The outcome's frequentist rows (``crosscheck.csv``, else the trial table)."""
        cc = self.csv(outcome, "crosscheck.csv")
        return cc if cc is not None else E.frequentist_rows(self.csv("estimates.csv"), outcome)

    def people(self, table: str | None) -> bool:
        """Whether a data table's rows are people (their counts are suppressed)."""
        return table in PEOPLE_TABLES

    def count(self, n, table: str | None) -> str:
        """A count of ``table``'s rows: suppressed when they are people, else printed whole."""
        return count(n, self.below if self.people(table) else 0)

    def rel(self, path: Path) -> str:
        """``path`` relative to the page."""
        return Path(os.path.relpath(Path(path).resolve(), self.out_html.resolve().parent)).as_posix()

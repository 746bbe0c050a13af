"""Pandera schemas of the contract tables, built from the trial config.

Each rule is a vectorised ``pandera.Check`` whose ``error`` is a key into ``TableSchema.rules``; the key
maps back to the column a user should look at and what was expected, so that ``validate.run_schema``
can turn pandera's failure cases into :class:`qialign.errors.Problem` objects.

Checks never raise on bad values: they coerce with ``pd.to_numeric(errors="coerce")`` and let a
non-numeric value fail only the type rule (range rules pass values that are not numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from qialign.families import FAMILIES
from qialign.waves import ONE_WAVE, wave_labels, wave_order


def trials_column(outcome: dict) -> str:
    """The column of a binomial outcome's trials in cluster_periods: its ``trials`` key, else the
    contract's count of patients ``n``."""
    return outcome["trials"] if "trials" in outcome else "n"


def num(s: pd.Series) -> pd.Series:
    """Numeric view of a column (non-numbers become NaN); never raises."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    if pd.api.types.is_numeric_dtype(s):
        return s.astype("float64")
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _pass_na(s: pd.Series, ok: pd.Series) -> pd.Series:
    return ok.fillna(False).astype(bool) | s.isna()


def is_number(s: pd.Series) -> pd.Series:
    return _pass_na(s, num(s).notna())


def is_integer(s: pd.Series) -> pd.Series:
    x = num(s)
    return _pass_na(s, np.isfinite(x) & (np.mod(x, 1) == 0))


def when_number(cond: Callable[[pd.Series], pd.Series]) -> Callable[[pd.Series], pd.Series]:
    """A range rule: non-numbers and missing values pass (the type rule reports them)."""

    def check(s: pd.Series) -> pd.Series:
        x = num(s)
        return x.isna() | cond(x).fillna(False).astype(bool)

    return check


@dataclass
class Rule:
    """What a failing check means for the user."""

    column: str | None  # contract name of the column to cite
    expected: str
    values: bool = True  # show example failing values


@dataclass
class TableSchema:
    """A pandera schema under construction plus the meaning of each of its checks."""

    table: str
    file: str
    columns_present: list[str]
    display: dict[str, str] = field(default_factory=dict)  # contract name -> user's name
    columns: dict[str, pa.Column] = field(default_factory=dict)
    checks: list[pa.Check] = field(default_factory=list)
    rules: dict[str, Rule] = field(default_factory=dict)
    index_name: str = "row"

    def name(self, column: str | None) -> str | None:
        """The user's name for a contract column."""
        return None if column is None else self.display.get(column, column)

    def _key(self, column: str | None, expected: str, values: bool) -> str:
        key = f"{self.table}#{len(self.rules)}"
        self.rules[key] = Rule(column, expected, values)
        return key

    def column(
        self,
        column: str,
        rules: list[tuple[str, Callable[[pd.Series], pd.Series]]] = (),
        required: bool = True,
        nullable: bool = True,
    ) -> None:
        """Declare a column with element rules ``[(expected, vectorised predicate), ...]``."""
        checks = [pa.Check(fn, error=self._key(column, exp, True), ignore_na=False) for exp, fn in rules]
        if column in self.columns:  # add rules to an existing declaration
            old = self.columns[column]
            checks = list(old.checks) + checks
            required = required or old.required
            nullable = nullable and old.nullable
        self.columns[column] = pa.Column(checks=checks, required=required, nullable=nullable, name=column)

    def frame_rule(
        self,
        column: str | None,
        expected: str,
        fn: Callable[[pd.DataFrame], pd.Series | bool],
        values: bool = True,
    ) -> None:
        """A rule on the whole table; ``fn`` returns a row mask or one bool."""
        self.checks.append(pa.Check(fn, error=self._key(column, expected, values), ignore_na=False))

    def build(self) -> pa.DataFrameSchema:
        return pa.DataFrameSchema(self.columns, checks=self.checks, name=self.table)


# ---------------------------------------------------------------- helpers used by the builders
def in_set(allowed, label: str) -> tuple[str, Callable]:
    allowed = set(allowed)
    return label, lambda s: s.isna() | s.astype("str").isin(allowed)


def unique_values() -> tuple[str, Callable]:
    return "unique values (each value may appear once)", lambda s: s.isna() | ~s.duplicated(keep=False)


def unique_rows(schema: TableSchema, keys: list[str], column: str) -> None:
    """Every combination of ``keys`` appears once (rows with a missing key are not compared)."""
    if not all(k in schema.columns_present for k in keys):
        return
    label = ", ".join(schema.name(k) for k in keys)

    def check(df: pd.DataFrame) -> pd.Series:
        sub = df[keys].astype("str")
        missing = df[keys].isna().any(axis=1)
        return missing | ~sub.duplicated(keep=False)

    schema.frame_rule(column, f"one row per ({label}); these rows repeat a combination", check)


def le_column(schema: TableSchema, column: str, bound: str) -> None:
    """``column <= bound`` row by row (skipped when either is missing or not a number)."""
    if column not in schema.columns_present or bound not in schema.columns_present:
        return

    def check(df: pd.DataFrame) -> pd.Series:
        a, b = num(df[column]), num(df[bound])
        return a.isna() | b.isna() | (a <= b)

    schema.frame_rule(column, f"at most the value of '{schema.name(bound)}'", check)


def integer_rules(minimum: float | None = None, label: str = "an integer") -> list:
    rules = [(label, is_integer)]
    if minimum is not None:
        rules.append((f"{label} >= {minimum:g}", when_number(lambda x: x >= minimum)))
    return rules


def outcome_rules(family: str) -> list:
    """Element rules for a row-level outcome column."""
    if family == "bernoulli":
        return [("a number", is_number), ("0 or 1 (bernoulli)", when_number(lambda x: x.isin([0, 1])))]
    if family == "binomial" or FAMILIES[family].kind == "count":
        return [
            ("a number", is_number),
            (f"a whole number >= 0 ({family})", when_number(lambda x: (x >= 0) & (np.mod(x, 1) == 0))),
        ]
    if family == "lognormal":
        return [("a number", is_number), ("> 0 (lognormal)", when_number(lambda x: x > 0))]
    return [("a finite number", is_number), ("a finite number", when_number(np.isfinite))]


def treatment_rules() -> list:
    """A user's own treatment indicator (``treated``; checked against start_period by data.treatment)."""
    return [("a number", is_number), ("0 or 1 (treatment indicator)", when_number(lambda x: x.isin([0, 1])))]


def period_rules() -> list:
    return [("an integer period", is_integer)]


def covariate_rules(name: str) -> list:
    return [(f"numeric values (covariate '{name}')", is_number)]


# ---------------------------------------------------------------- table builders
@dataclass
class Context:
    """What the table schemas need to know beyond one table."""

    cfg: dict
    files: dict[str, str]  # table -> path as given in the config
    display: dict[str, dict[str, str]]  # table -> (contract name -> user's name), data.renames
    cluster_ids: set[str] | None  # None when the clusters table has no cluster column
    period_range: tuple[int, int] | None
    locations: dict[str, str | None]  # outcome -> table holding it
    date_column: str | None = None
    origin: pd.Timestamp | None = None
    unit: str = "month"


def _new(table: str, df: pd.DataFrame, ctx: Context) -> TableSchema:
    return TableSchema(table, ctx.files[table], list(df.columns), dict(ctx.display.get(table, {})))


def _cluster_column(s: TableSchema, ctx: Context) -> None:
    rules = []
    if ctx.cluster_ids is not None:
        rules = [in_set(ctx.cluster_ids, "a cluster id listed in the clusters table")]
    s.column("cluster", rules, required=True, nullable=False)


def _period_column(s: TableSchema, df: pd.DataFrame, ctx: Context) -> None:
    dc = ctx.date_column
    if dc and dc in df.columns:
        from qialign.data.periods import parse_dates, whole_units

        def on_or_after_origin(v: pd.Series) -> pd.Series:
            d = parse_dates(v)
            return d.isna() | (whole_units(d, ctx.origin, ctx.unit) >= 0).fillna(True)

        origin = ctx.origin.date().isoformat() if ctx.origin is not None else "the origin"
        rules = [
            ("a date such as 2024-01-31", lambda v: v.isna() | parse_dates(v).notna()),
            (f"a date on or after the period origin {origin}", on_or_after_origin),
        ]
        s.column(dc, rules, required=True, nullable=False)
    else:
        s.column("period", period_rules(), required=True, nullable=False)


def _covariates(s: TableSchema, df: pd.DataFrame, ctx: Context, elsewhere: set[str] | None) -> None:
    """Covariates in this table must be numeric; with ``elsewhere`` (columns of the other tables),
    a covariate found in no table is reported against this one."""
    for cov in ctx.cfg["covariates"]:
        if cov in df.columns:
            s.column(cov, covariate_rules(s.name(cov)), required=False)
        elif elsewhere is not None and cov not in elsewhere:
            present = ", ".join(s.name(c) for c in df.columns)
            s.frame_rule(
                cov,
                f"covariate '{s.name(cov)}' (config covariates) in this table, the cluster_periods "
                f"or the clusters table (columns present: {present})",
                lambda df: False,
                values=False,
            )


def clusters_schema(df: pd.DataFrame, ctx: Context) -> TableSchema:
    """clusters: unique ids, optional site, start_period (integer or date, inside the period range)."""
    s = _new("clusters", df, ctx)
    s.column("cluster", [unique_values()], required=True, nullable=False)
    s.column("site", [], required=False, nullable=False)
    label = "an integer period" + (" or a date" if ctx.date_column else "") + " (empty = never starts)"
    start_rules = [(label, is_integer)]
    if ctx.period_range is not None:
        lo, hi = ctx.period_range
        start_rules.append(
            (
                f"a start period inside the period range {lo}..{hi} of the data",
                when_number(lambda x: (x >= lo) & (x <= hi)),
            )
        )
    s.column("start_period", start_rules, required=True, nullable=True)
    given = ctx.cfg["alignment"]["source"] == "given"
    s.column(
        "alignment",
        [("a number (cluster alignment score)", is_number)],
        required=given,
        nullable=not given,
    )
    for cov in ctx.cfg["covariates"]:
        if cov in df.columns:
            s.column(cov, covariate_rules(s.name(cov)), required=False)
    return s


def patients_schema(df: pd.DataFrame, ctx: Context, elsewhere: set[str] | None) -> TableSchema:
    """patients: cluster, period (or date), outcomes by family, covariates, optional unique id."""
    s = _new("patients", df, ctx)
    _cluster_column(s, ctx)
    _period_column(s, df, ctx)
    s.column("id", [unique_values()], required=False, nullable=False)
    s.column("treated", treatment_rules(), required=False)
    for name, out in ctx.cfg["outcomes"].items():
        if ctx.locations.get(name) != "patients":
            continue
        family = out["family"]
        s.column(name, outcome_rules(family), required=True, nullable=True)
        if family == "binomial" and out.get("trials"):
            s.column(out["trials"], integer_rules(1, "a whole number of trials"), required=True)
            le_column(s, name, out["trials"])
        if FAMILIES[family].kind == "count" and out.get("exposure"):
            _exposure(s, name, out["exposure"])
    _covariates(s, df, ctx, elsewhere)
    return s


def _exposure(s: TableSchema, outcome: str, col: str) -> None:
    s.column(
        col,
        [("a number", is_number), ("an exposure > 0", when_number(lambda x: x > 0))],
        required=True,
    )
    if col in s.columns_present and outcome in s.columns_present:
        s.frame_rule(
            col,
            f"an exposure wherever '{s.name(outcome)}' is given",
            lambda df: df[outcome].isna() | df[col].notna(),
            values=False,
        )


def cluster_periods_schema(df: pd.DataFrame, ctx: Context, elsewhere: set[str] | None) -> TableSchema:
    """cluster_periods: one row per (cluster, period), n >= 1, per-outcome summaries."""
    s = _new("cluster_periods", df, ctx)
    _cluster_column(s, ctx)
    _period_column(s, df, ctx)
    s.column("n", integer_rules(1, "a whole number of patients"), required=True, nullable=False)
    unique_rows(s, ["cluster", "period"], "period")
    s.column("treated", treatment_rules(), required=False)
    for name, out in ctx.cfg["outcomes"].items():
        if ctx.locations.get(name) != "cluster_periods":
            continue
        family = out["family"]
        kind = FAMILIES[family].kind
        if kind == "binary":
            trials = trials_column(out)
            s.column(name, outcome_rules("binomial"), required=True)
            if trials != "n":
                s.column(trials, integer_rules(1, "a whole number of trials"), required=True)
            le_column(s, name, trials)
        elif kind == "count":
            s.column(name, outcome_rules(family), required=True)
            if out.get("exposure"):
                _exposure(s, name, out["exposure"])
        else:
            scale = " of log values (lognormal)" if family == "lognormal" else ""
            s.column(f"{name}_mean", [(f"a finite mean{scale}", when_finite())], required=True)
            s.column(
                f"{name}_sd",
                [(f"a finite SD{scale}", when_finite()), ("an SD >= 0", when_number(lambda x: x >= 0))],
                required=True,
            )
    _covariates(s, df, ctx, elsewhere)
    return s


def when_finite() -> Callable[[pd.Series], pd.Series]:
    def check(v: pd.Series) -> pd.Series:
        return _pass_na(v, np.isfinite(num(v)))

    return check


def survey_schema(df: pd.DataFrame, ctx: Context) -> TableSchema:
    """survey: unique respondent, known cluster and role, a wave (listed in alignment.waves when
    given), Likert items in the scale."""
    al = ctx.cfg["alignment"]
    s = _new("survey", df, ctx)
    s.column("respondent", [unique_values()], required=True, nullable=False)
    _cluster_column(s, ctx)
    roles = al.get("roles") or {}
    allowed = [*(roles.get("clinical") or ()), *(roles.get("managerial") or ())]
    role_rules = []
    if allowed:
        role_rules = [in_set(allowed, "a role listed in alignment.roles: " + ", ".join(allowed))]
    s.column("role", role_rules, required=True, nullable=False)
    _wave_column(s, df, al)
    lo, hi = al["scale"]["min"], al["scale"]["max"]
    items = [i for its in (al.get("domains") or {}).values() for i in its]
    for item in dict.fromkeys(items):
        s.column(
            item,
            [
                ("an integer Likert score", is_integer),
                (f"a score inside the scale {lo}..{hi}", when_number(lambda x: (x >= lo) & (x <= hi))),
            ],
            required=True,
            nullable=True,
        )
    for item in al["reverse"]:
        if item not in items:
            s.frame_rule(
                item,
                f"reverse item '{item}' (alignment.reverse) to be one of the domain items "
                f"(alignment.domains: {', '.join(items) or 'none'})",
                lambda df: False,
                values=False,
            )
    return s


def _wave_column(s: TableSchema, df: pd.DataFrame, al: dict) -> None:
    """Every row has a wave; with ``alignment.waves`` each is listed there; ``alignment.wave``, when
    set, is one of the survey's waves."""
    listed = al.get("waves")
    rules = []
    if listed is not None:
        allowed = set(listed)
        rules.append(
            (
                f"a wave listed in alignment.waves ({', '.join(listed)})",
                lambda v: v.isna() | wave_labels(v).isin(allowed),
            )
        )
    s.column("wave", rules, required=False, nullable=False)
    present = set(wave_labels(df["wave"]).dropna()) if "wave" in df.columns else {ONE_WAVE}
    chosen = al.get("wave")
    if al.get("source") == "survey" and chosen is not None and present and chosen not in present:
        shown = wave_order(present & set(listed), listed) if listed else wave_order(present)
        s.frame_rule(
            "wave",
            f"the wave '{chosen}' of alignment.wave among the survey's waves ({', '.join(shown)})",
            lambda df: False,
            values=False,
        )


def implementation_schema(df: pd.DataFrame, ctx: Context) -> TableSchema:
    """implementation: cluster, period (or date), fidelity finite >= 0, one row per cell."""
    col = ctx.cfg["fidelity"]["column"]
    s = _new("implementation", df, ctx)
    _cluster_column(s, ctx)
    _period_column(s, df, ctx)
    s.column(
        col,
        [("a finite number", when_finite()), ("fidelity >= 0", when_number(lambda x: x >= 0))],
        required=True,
        nullable=True,
    )
    unique_rows(s, ["cluster", "period"], "period")
    return s

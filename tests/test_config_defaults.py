"""Every default lives in the trial schema: the typed config, ModelSpec and the package's reads of a
config mapping carry none of their own."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from qialign.config import (
    fill_defaults,
    schema_defaults,
    trial_config,
    trial_schema,
    typed,
    validate_trial_config,
)
from qialign.config.schema import part_schema
from qialign.models.spec import ModelSpec, simulated_spec

SRC = Path(__file__).resolve().parents[1] / "src" / "qialign"
MINIMAL = {
    "id": "t1",
    "design": "stepped_wedge",
    "data": {"clusters": "c.csv", "patients": "p.csv"},
    "outcomes": {"y": {"family": "bernoulli"}},
    "seed": 1,
}
#: each typed part -> (the part of the schema it mirrors, where it sits in a TrialConfig)
PARTS = {
    typed.Sampler: ("sampler", lambda t: t.sampler),
    typed.Diagnostics: ("diagnostics", lambda t: t.diagnostics),
    typed.Interval: ("interval", lambda t: t.interval),
    typed.Report: ("report", lambda t: t.report),
    typed.Robustness: ("robustness", lambda t: t.robustness),
    typed.Power: ("power", lambda t: t.power),
    typed.Fidelity: ("fidelity", lambda t: t.fidelity),
    typed.Alignment: ("alignment", lambda t: t.alignment),
    typed.Scale: ("alignment/scale", lambda t: t.alignment.scale),
    typed.LatentSampler: ("alignment/latent", lambda t: t.alignment.latent),
    typed.ModelVariant: ("model", lambda t: t.models[0]),
    typed.Priors: ("priors", lambda t: t.models[0].priors),
    typed.Outcome: ("outcomes", lambda t: t.outcomes["y"]),
    typed.TrialConfig: ("", lambda t: t),
}


def _package_files() -> list[Path]:
    """The modules whose config reads are checked: every module of the package."""
    return sorted(SRC.rglob("*.py"))


def _properties(part: str) -> dict:
    if part == "outcomes":
        return trial_schema()["properties"]["outcomes"]["additionalProperties"]["properties"]
    return trial_schema()["properties"] if part == "" else part_schema(part)["properties"]


def _as_typed(value):
    """A schema default as the typed view holds it (lists as tuples)."""
    if isinstance(value, list):
        return tuple(_as_typed(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_typed(v) for k, v in value.items()}
    return value


def _set(value):
    """Without the keys that are unset (None: optional keys the schema gives no default)."""
    if isinstance(value, dict):
        return {k: _set(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return type(value)(_set(v) for v in value)
    return value


@pytest.mark.parametrize("cls", list(PARTS), ids=lambda c: c.__name__)
def test_each_typed_part_mirrors_its_schema_and_defaults_to_it(cls):
    """Field names = the schema's keys; a minimal config's value = the schema's default (a default
    mapping with the defaults of its own keys filled in)."""
    part, where = PARTS[cls]
    props = _properties(part)
    assert {f.name for f in dataclasses.fields(cls)} == set(props)
    value = where(trial_config(validate_trial_config(MINIMAL)))
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    assert len(defaults) >= 1
    for name, default in defaults.items():
        got = getattr(value, name)
        if isinstance(default, dict):  # a part: with the defaults of its own keys
            default = fill_defaults(default, f"{part}/{name}".strip("/"))
        if name == "models":  # the default list of one model entry
            default = [fill_defaults(m, "model") for m in default]
            got = tuple(dataclasses.asdict(m) for m in got)
        got = dataclasses.asdict(got) if dataclasses.is_dataclass(got) else got
        assert _set(got) == _set(_as_typed(default)), (cls.__name__, name, got, default)


def test_typed_parts_cover_every_dataclass_and_none_has_a_default():
    ours = [v for v in vars(typed).values() if getattr(v, "__module__", None) == typed.__name__]
    classes = [v for v in ours if dataclasses.is_dataclass(v)]
    assert set(classes) == set(PARTS)
    unset = dataclasses.MISSING
    defaulted = [(c, f.name) for c in classes for f in dataclasses.fields(c) if f.default is not unset]
    assert defaulted == [] and all(f.default_factory is unset for c in classes for f in dataclasses.fields(c))


def test_model_spec_defaults_only_what_is_not_a_config_key():
    with_default = [f.name for f in dataclasses.fields(ModelSpec) if f.default is not dataclasses.MISSING]
    assert with_default == ["store_predictions"]  # not in the schema: decided per fit


def test_values_from_a_minimal_config():
    """Numbers of the schema as the typed config and a spec see them (a changed default fails)."""
    t = trial_config(validate_trial_config(MINIMAL))
    s = t.sampler
    assert (s.engine, s.chains, s.draws, s.tune, s.target_accept) == ("nutpie", 4, 1000, 1000, 0.95)
    assert (t.diagnostics.r_hat_max, t.diagnostics.ess_bulk_min, t.diagnostics.retry) == (1.01, 400, True)
    assert (t.interval.prob, t.interval.kind, t.report.suppress_below) == (0.95, "eti", 5)
    assert t.power.icc == (0.01, 0.05, 0.1) and t.power.outcome is None
    assert [m.id for m in t.models] == ["main"] and t.models[0].priors.sd_cluster_period == 0.3
    assert t.alignment.latent.keep == 200 and t.alignment.wave is None and t.fidelity.column == "fidelity"
    assert t.outcomes["y"].better == "lower" and t.outcomes["y"].models is None
    assert t.sampler_for(t.models[0]) == t.sampler
    spec = simulated_spec("bernoulli", {"id": "m", "sampler": {"chains": 2}})
    assert spec.sampler == {**schema_defaults("sampler"), "chains": 2}
    assert spec.priors == dataclasses.asdict(t.models[0].priors)


def test_typed_config_is_frozen_and_follows_the_file():
    t = trial_config(validate_trial_config({**MINIMAL, "models": [{"id": "a", "sampler": {"draws": 200}}]}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.sampler.draws = 5  # type: ignore[misc]
    assert t.sampler_for(t.models[0]).draws == 200 and t.sampler.draws == 1000


#: ``.get`` calls with a config key's name on mappings that are not config
NOT_CONFIG = {
    "data/prepare.py: cols.get('cluster_periods', set())": "column names per table",
    "init.py: args.get('seed', 1)": "the arguments of qialign init, which writes a config",
    "report/attention.py: r.get('wave', '?')": "a row of alignment/scores.csv",
    "report/design_section.py: (ctx.json('data.json') or {}).get('clusters', [])": "validate's data.json",
    "report/effects.py: r.get('scale', '')": "a row of estimates.csv",
    "report/effects.py: (truth or {}).get('outcomes', {})": "a synthetic trial's truth.json",
}


def _schema_keys(node) -> set[str]:
    """Every property name anywhere in the schema."""
    keys = set()
    if isinstance(node, dict):
        keys |= set(node.get("properties", {}))
        for v in node.values():
            keys |= _schema_keys(v)
    elif isinstance(node, list):
        for v in node:
            keys |= _schema_keys(v)
    return keys


def _defaulted_gets(path: Path, keys: set[str], root: Path = SRC) -> list[str]:
    """``x.get('<config key>', <literal other than None>)`` calls in one file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
        ):
            continue
        if (
            len(node.args) != 2
            or not isinstance(node.args[0], ast.Constant)
            or node.args[0].value not in keys
        ):
            continue
        try:
            fallback = ast.literal_eval(node.args[1])
        except ValueError:
            continue
        if fallback is not None:
            out.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return [hit for hit in out if hit.split(":")[0] + ": " + hit.split(": ", 1)[1] not in NOT_CONFIG]


def test_no_config_read_restates_a_default():
    keys = _schema_keys(trial_schema())
    assert {"reverse", "cores", "retry", "harmonics"} <= keys
    files = _package_files()
    found = [hit for p in files for hit in _defaulted_gets(p, keys)]
    assert found == []


def test_the_scan_finds_a_restated_default(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('def f(cfg):\n    return cfg["alignment"].get("reverse", []), cfg.get("seed", None)\n')
    hits = _defaulted_gets(probe, _schema_keys(trial_schema()), root=tmp_path)
    assert hits == ["probe.py:2: cfg['alignment'].get('reverse', [])"]


def _keyword_defaults(path: Path) -> list[tuple[str, int, str, object]]:
    """(file, line, argument, literal default) of every function argument with a literal default."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        a = node.args
        pairs = list(zip(a.args[len(a.args) - len(a.defaults) :], a.defaults, strict=True))
        pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
        for arg, default in pairs:
            try:
                out.append((str(path.relative_to(SRC)), node.lineno, arg.arg, ast.literal_eval(default)))
            except ValueError:
                continue
    return out


#: function arguments that take a config value: name -> the schema's default of that value
MIRRORS = {"prob": ("interval", "prob"), "interval": ("interval", "prob"), "alpha": ("power", "alpha")}
#: arguments of those names that mean something else
OWN_VALUE = {("models/checks.py", "prob"): "the posterior predictive check's own 90% band"}


def test_keyword_defaults_that_take_a_config_value_equal_the_schema():
    """A function default standing for a config value (``prob``: interval.prob) is the schema's."""
    files = _package_files()
    checked, wrong = 0, []
    for path in files:
        for where, line, name, value in _keyword_defaults(path):
            if name not in MIRRORS or not isinstance(value, float) or (where, name) in OWN_VALUE:
                continue
            part, key = MIRRORS[name]
            checked += 1
            if value != schema_defaults(part)[key]:
                wrong.append(f"{where}:{line}: {name}={value!r}, schema {part}.{key}")
    assert checked >= 4 and wrong == []  # (interval defaults are now results.DEFAULT_INTERVAL_PROB)


def _schema_node(path: str) -> dict | None:
    """The schema of a README key path (``alignment.latent.keep``, ``models[].trend``,
    ``outcomes.<name>.better``), or None."""
    schema = trial_schema()
    node = schema
    for part in path.split("."):
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].split("/")[-1]]
        if part == "<name>":
            node = node.get("additionalProperties") or {}
            continue
        name = part.removesuffix("[]")
        node = node.get("properties", {}).get(name)
        if node is None:
            return None
        if part.endswith("[]"):
            node = node["items"]
    return schema["$defs"][node["$ref"].split("/")[-1]] | node if "$ref" in node else node


def _readme_defaults() -> list[tuple[str, object]]:
    """(key path, default) of every row of config/README.md's trial tables whose default is
    written as values in backticks (``a``, ``.b`` | ``1``, ``2`` rows split into one pair each)."""
    text = (SRC.parents[1] / "config" / "README.md").read_text()
    trial_part = text[text.index("## config/trials/") :]
    out = []
    for line in trial_part.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) < 3 or not cells[0].startswith("`") or not cells[1].startswith("`"):
            continue
        keys = [k.strip().strip("`") for k in cells[0].split(",")]
        values = (
            [v.strip().strip("`") for v in cells[1].split(",")] if len(keys) > 1 else [cells[1].strip("`")]
        )
        if len(values) != len(keys):
            continue
        parent = keys[0].rsplit(".", 1)[0]
        for key, value in zip(keys, values, strict=True):
            out.append((parent + key if key.startswith(".") else key, yaml.safe_load(value)))
    return out


def test_config_readme_defaults_are_the_schema_defaults():
    """The README's default column is a copy for readers: every value equals the schema's."""
    compared, wrong = 0, []
    for path, value in _readme_defaults():
        node = _schema_node(path)
        if node is None or "default" not in node:
            continue
        compared += 1
        if value != node["default"]:
            wrong.append(f"{path}: README {value!r}, schema {node['default']!r}")
    assert compared >= 50 and wrong == []


@pytest.mark.parametrize(
    "path", sorted((SRC.parents[1] / "config" / "trials").glob("*.yaml")), ids=lambda p: p.stem
)
def test_typed_view_of_each_shipped_trial_holds_its_validated_values(path):
    """Through the real loader: every typed part equals the schema-filled mapping it was built from."""
    from qialign.config import load_trial_config

    cfg = load_trial_config(path)
    t = trial_config(cfg)
    for part in ("sampler", "diagnostics", "interval", "power", "report", "fidelity"):
        assert _set(dataclasses.asdict(getattr(t, part))) == _set(_as_typed(cfg[part])), part
    assert [dataclasses.asdict(m) for m in t.models] == [_as_typed(m) for m in cfg["models"]]
    assert {k: _set(dataclasses.asdict(o)) for k, o in t.outcomes.items()} == _set(_as_typed(cfg["outcomes"]))
    assert _set(dataclasses.asdict(t.alignment)) == _set(_as_typed(cfg["alignment"]))

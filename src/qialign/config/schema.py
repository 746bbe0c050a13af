"""The trial JSON schema (``trial.schema.yaml``, linked from ``workflow/schemas/``): the one place
every default of a trial configuration is written, read by Snakemake and by ``qialign validate``."""

from __future__ import annotations

import copy
from functools import cache
from importlib.resources import files
from pathlib import Path

import jsonschema
import yaml

from qialign.errors import QialignError

SCHEMA_PATH = Path(str(files("qialign.config") / "trial.schema.yaml"))


@cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def trial_schema() -> dict:
    """The trial JSON schema as a dict (a copy: callers may change it)."""
    return copy.deepcopy(_schema())


def default_filling_validator():
    """A Draft 2020-12 validator that writes each missing property's default (deep-copied) first."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def part_schema(part: str) -> dict:
    """The schema of one part of a trial config: a ``$defs`` entry (``model``, ``priors``,
    ``sampler``) or a top-level property (``diagnostics``, ``interval``, ``power``, ...), then
    nested properties after slashes (``alignment/latent``)."""
    schema = _schema()
    first, *nested = part.split("/")
    node = schema["$defs"][first] if first in schema["$defs"] else schema["properties"][first]
    for key in nested:
        node = node["properties"][key]
    return {**node, "$defs": schema["$defs"]}


def fill_defaults(fragment: dict, part: str) -> dict:
    """``fragment`` (one part of a trial config, see :func:`part_schema`) validated, with the
    schema's defaults filled in (a copy); QialignError listing what does not validate."""
    out = copy.deepcopy(fragment)
    errors = list(default_filling_validator()(part_schema(part)).iter_errors(out))
    if errors:
        raise QialignError(f"{part}: " + "; ".join(e.message for e in errors))
    return out


def schema_defaults(part: str) -> dict:
    """Every default of one part of a trial config, e.g. ``schema_defaults('diagnostics')``."""
    return fill_defaults({}, part)

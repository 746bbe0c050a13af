"""Posterior files: netCDF (h5netcdf) with provenance in the root attributes.

Attributes must be netCDF-friendly, so every value that is not a str/int/float/bool becomes a
JSON string (config, versions, data hash ...); ``load_posterior`` returns the DataTree and the
decoded attributes. Object-dtype sampler statistics (nutpie's divergence messages) are dropped,
and so are the per-cell predictions (``models.build.PREDICTIONS``, eta and tx: two draws x cells
arrays, 256 of the 393 MB of the 12 x 10 reference trial's file), which are functions of the
parameters' draws (``inference.fit.with_predictions`` computes them); the per-cell log-likelihood
stays, for LOO and prior sensitivity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr


def _netcdf_value(v):
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (str, int, float, np.integer, np.floating)):
        return v
    return json.dumps(v, default=str, sort_keys=True)


def _clean(ds: xr.Dataset) -> xr.Dataset:
    drop = [k for k, v in ds.data_vars.items() if v.dtype == object]
    ds = ds.drop_vars(drop)
    ds.attrs = {k: _netcdf_value(v) for k, v in ds.attrs.items()}
    return ds


def save_posterior(fit, path, attrs: dict | None = None) -> Path:
    """Write ``fit.idata`` to ``path``; ``attrs`` (config, seed, versions, data hash) go in root.
    (PyMC is imported here, not by the module: reading a posterior does not need it.)"""
    import pymc
    import pytensor

    from qialign.models.build import PREDICTIONS

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = fit.idata.copy()
    groups = {}
    for name, node in tree.children.items():
        groups[f"/{name}"] = _clean(node.to_dataset())
    groups["/posterior"] = groups["/posterior"].drop_vars(list(PREDICTIONS), errors="ignore")
    root = {
        **{k: _netcdf_value(v) for k, v in tree.attrs.items()},
        "reliable": int(fit.reliable),
        "retried": int(fit.retried),
        "problems": json.dumps(fit.problems),
        "timings": json.dumps(fit.timings),
        "sampler": json.dumps(fit.sampler, default=str),
        "pymc_version": pymc.__version__,
        "pytensor_version": pytensor.__version__,
    }
    root.update({k: _netcdf_value(v) for k, v in (attrs or {}).items()})
    out = xr.DataTree.from_dict({"/": xr.Dataset(attrs=root), **groups})
    out.to_netcdf(path, engine="h5netcdf")
    return path


def load_posterior(path) -> tuple[xr.DataTree, dict]:
    """Read a posterior file; returns (DataTree, attributes with JSON strings decoded)."""
    tree = xr.open_datatree(path, engine="h5netcdf").load()
    attrs = {}
    for k, v in tree.attrs.items():
        try:
            attrs[k] = json.loads(v) if isinstance(v, str) else v
        except (json.JSONDecodeError, TypeError):
            attrs[k] = v
    return tree, attrs

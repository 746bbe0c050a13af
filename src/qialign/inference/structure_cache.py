"""nutpie models compiled once per graph structure, loaded from disk by later processes.

nutpie 0.16 wraps PyTensor's numba logp+gradient (and the "expand" function that computes the
stored variables) in numba ``cfunc`` s that it recompiles in every process: their closures hold
objects whose pickle carries a random uuid, so numba's cache key never matches. Here the two
wrappers are written as plain functions of a generated module, ``<cache>/nutpie/m_<key>.py``, with
the data passed through nutpie's ``user_data`` pointer record (not frozen into the code), and
compiled with ``numba.cfunc(..., cache=True)``: a later process with the same *structure* (graph,
shapes and dtypes of the data; not their values, nor their lengths along ``data_only_dims``, the
cells, which are left unfrozen) loads the machine code from numba's cache and skips PyTensor's
rewriting and code generation altogether. The three binary outcomes of a trial, simulation
replicates, alignment draws (``with_data``) and a re-export of a patient-row trial with other
patients in the same clusters and periods share one compilation.

``key`` = sha256 over the logp and stored-variable graphs (op, props, output types; constants by
value; shared data by name, dtype and shape), the free variables and the library versions.
``m_<key>.json`` holds what the warm path needs without compiling (sizes, names, the order of the
data arguments). With fast-math off (``compile_cache``) a loaded wrapper computes exactly what a
freshly compiled one does, so cold and warm fits give identical draws.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSION = 3  # bump when the generated source or metadata change
_MEMORY: dict[str, tuple] = {}  # key -> (logp cfunc, expand cfunc, meta): this process's compiles
_LOCK = threading.Lock()


@dataclass
class CacheInfo:
    """How a compile went: the structure key and where the wrappers came from."""

    key: str
    source: str  # "memory" (this process), "disk" (numba's cache) or "compiled"


def _op_token(op) -> str:
    props = getattr(op, "__props__", None)
    if props:
        return f"{type(op).__module__}.{type(op).__qualname__}{[(p, repr(getattr(op, p))) for p in props]}"
    return f"{type(op).__module__}.{type(op).__qualname__}:{op!r}"


def _is_rng(v) -> bool:
    from pytensor.tensor.random.type import RandomType

    return isinstance(v.type, RandomType)


def data_only_dims(model, var_names=None) -> set[str]:
    """Dimensions that only data have (the cells of a patient-row trial, not any free or stored
    variable): left unfrozen, their lengths are run-time arguments of the compiled code, so a
    re-export of the trial with other cells but the same clusters and periods reuses it."""
    free = [rv.name for rv in model.free_RVs]
    stored = [v.name for v in model.deterministics] if var_names is None else list(var_names)
    dims = model.named_vars_to_dims
    fixed = {dim for name in free + stored for dim in dims.get(name, ())}
    return {dim for name, ds in dims.items() for dim in ds if dim is not None} - fixed


def _open_shape(shape: tuple, dims, open_dims: set[str]) -> tuple:
    """``shape`` with the lengths along ``open_dims`` left open ("?")."""
    dims = dims or (None,) * len(shape)
    return tuple("?" if dim in open_dims else n for n, dim in zip(shape, dims, strict=True))


def _root_token(v, data_dims: dict, open_dims: set[str]) -> str:
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant

    if _is_rng(v):
        return f"rng {v.type}"  # random generators: state, not structure
    if isinstance(v, SharedVariable):
        value = v.get_value(borrow=True)
        shape = _open_shape(np.shape(value), data_dims.get(v.name), open_dims)
        return f"shared {v.name} {v.type} {shape} {np.asarray(value).dtype}"
    if isinstance(v, Constant):
        data = np.asarray(v.data)
        raw = repr(v.data).encode() if data.dtype == object else data.tobytes()  # object: pointers
        return f"const {v.type} {data.dtype} {data.shape} {hashlib.sha256(raw).hexdigest()}"
    return f"input {v.name} {v.type}"


def graph_key(outputs, inputs, extra: str = "", data_dims: dict | None = None, open_dims=frozenset()) -> str:
    """sha256 of the structure of the graph from ``inputs`` to ``outputs`` (see module doc);
    ``data_dims`` (shared variable name -> dims) and ``open_dims``: lengths not in the key."""
    import numba
    import nutpie
    import pymc
    import pytensor
    from pytensor.graph.traversal import toposort

    h = hashlib.sha256(f"v{VERSION} {pytensor.__version__} {numba.__version__} {nutpie.__version__}".encode())
    h.update(f"{pymc.__version__} {sys.version} {pytensor.config.numba__fastmath} {extra}".encode())
    ids: dict = {}
    data_dims, open_dims = data_dims or {}, set(open_dims)

    def token(v) -> str:
        if v not in ids:
            ids[v] = len(ids)
            root = _root_token(v, data_dims, open_dims)
            h.update(f"root {ids[v]} {root} {inputs.index(v) if v in inputs else -1}\n".encode())
        return str(ids[v])

    for node in toposort(outputs):
        args = ",".join(token(i) for i in node.inputs)
        h.update(f"{_op_token(node.op)}({args})".encode())
        for o in node.outputs:
            ids[o] = len(ids)
            h.update(f"->{ids[o]}:{o.type}\n".encode())
    h.update(("out " + ",".join(token(o) for o in outputs)).encode())
    return h.hexdigest()[:32]


def _unpack(slots: list[str], meta: dict, names: list[str]) -> tuple[str, str]:
    """Source lines that view the record's data slots ``names`` as arrays, and the argument list."""
    k = len(meta["slots"])
    lines, args = [], []
    for name in names:
        i = meta["slots"].index(name)
        nd, dtype = meta["ndim"][i], meta["dtype"][i]
        off = 2 * k + sum(meta["ndim"][:i])
        # the shape straight into carray: a reshape would compile numba's shape-error formatting (~4 s)
        shape = "".join(f"int(ud[{off + j}])," for j in range(nd))
        lines.append(f"        a{i} = numba.carray(address_as_void_pointer(ud[{i}]), ({shape}), np.{dtype})")
        args.append(f"a{i}")
    return "\n".join(lines), ", ".join(args)


def _source(meta: dict) -> str:
    """The generated module: nutpie's two C callbacks, data read from the user_data record."""
    n_ud = 2 * len(meta["slots"]) + sum(meta["ndim"])
    lp_unpack, lp_args = _unpack(meta["slots"], meta, meta["logp_args"])
    ex_unpack, ex_args = _unpack(meta["slots"], meta, meta["expand_args"])
    n_dim, n_exp = meta["n_dim"], meta["n_expanded"]
    return f'''"""Generated by qialign.inference.structure_cache (key {meta["key"]}); do not edit."""
import numba
import numpy as np
from nutpie.compile_pymc import address_as_void_pointer

LOGP_INNER = None  # set by the process that compiles; unused when numba loads from its cache
EXPAND_INNER = None


def logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        ud = numba.carray(user_data_, ({max(n_ud, 1)},), np.uint64)
{lp_unpack or "        pass"}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_dim},))
        lp = numba.carray(logp_, ())
        logp_val, grad = LOGP_INNER(x, {lp_args})
        lp[()] = logp_val
        for i in range({n_dim}):  # a loop: out[...] = grad would compile numba's broadcast error (~4 s)
            out[i] = grad[i]
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:  # noqa: BLE001
        return 1
    return 0


def expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim} or expanded != {n_exp}:
        return -1
    try:
        ud = numba.carray(user_data_, ({max(n_ud, 1)},), np.uint64)
{ex_unpack or "        pass"}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_exp},))
        (values,) = EXPAND_INNER(x, {ex_args})
        for i in range({n_exp}):
            out[i] = values[i]
    except Exception:  # noqa: BLE001
        return -2
    return 0
'''


def _signatures():
    from numba import types

    logp = types.int64(
        types.uint64, types.CPointer(types.double), types.CPointer(types.double),
        types.CPointer(types.double), types.voidptr,
    )  # fmt: skip
    expand = types.int64(
        types.uint64, types.uint64, types.CPointer(types.double), types.CPointer(types.double), types.voidptr
    )
    return logp, expand


def _load_module(path: Path):
    """Import the generated module (registered, as numba's cache loader imports modules by name)."""
    from numba.core.utils import _dynamic_modname, _dynamic_module

    # PyTensor's generated kernels live in numba's module for dynamic code, which numba knows at
    # compile time but its cache loader imports by name
    sys.modules.setdefault(_dynamic_modname, _dynamic_module)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[path.stem] = module
    return module


def _cfuncs(module) -> tuple:
    """Both wrappers of ``module`` as cached cfuncs (loaded from numba's cache when there)."""
    import warnings

    import numba

    sig_logp, sig_expand = _signatures()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaWarning)
        return numba.cfunc(sig_logp, cache=True)(module.logp), numba.cfunc(sig_expand, cache=True)(
            module.expand
        )


def _cold(model, ipf, path: Path, key: str, var_names) -> tuple:
    """PyTensor's logp/gradient and expand functions, wrapped and compiled (and cached)."""
    from nutpie.compile_pymc import _make_functions

    n_dim, n_exp, logp_pt, expand_pt, _, shape_info, _ = _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=ipf,
        var_names=var_names,
    )
    logp_args = [v.name for v in logp_pt.get_shared()]
    expand_args = [v.name for v in expand_pt.get_shared()]
    shared = {v.name: v for v in [*logp_pt.get_shared(), *expand_pt.get_shared()]}
    if None in shared or len(shared) != len(set(map(id, shared.values()))):
        raise ValueError("shared variables need unique names to be cached by structure")
    slots = sorted(shared)
    values = [np.asarray(shared[s].get_value(borrow=True)) for s in slots]
    meta = {
        "key": key,
        "n_dim": int(n_dim),
        "n_expanded": int(n_exp),
        "shape_info": [
            shape_info[0],
            [[int(s.start), int(s.stop)] for s in shape_info[1]],
            [list(map(int, s)) for s in shape_info[2]],
        ],
        "slots": slots,
        "ndim": [v.ndim for v in values],
        "dtype": [str(v.dtype) for v in values],
        "logp_args": logp_args,
        "expand_args": expand_args,
    }
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{threading.get_native_id()}.tmp")
        tmp.write_text(_source(meta))
        tmp.replace(path)  # never rewritten: numba's cache is keyed by the file's stamp
    module = _load_module(path)
    module.LOGP_INNER, module.EXPAND_INNER = logp_pt.vm.jit_fn, expand_pt.vm.jit_fn
    logp, expand = _cfuncs(module)
    path.with_suffix(".json").write_text(json.dumps(meta))
    return logp, expand, meta


def _warm(path: Path) -> tuple | None:
    """The wrappers from numba's cache, or None when they are not all there."""
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        logp, expand = _cfuncs(_load_module(path))  # INNER None: only a cache load can succeed
    except Exception:  # noqa: BLE001 - numba tried to compile: the cache lacks an entry
        return None
    return logp, expand, json.loads(meta_path.read_text())


def _arguments(model) -> list:
    """The shared variables the compiled code reads at run time: the model's data, and the lengths
    of the dimensions left unfrozen (``data_only_dims``)."""
    from pytensor.compile.sharedvalue import SharedVariable

    lengths = [v for v in model.dim_lengths.values() if isinstance(v, SharedVariable)]
    return [*model.data_vars, *lengths]


def _user_data(model, meta: dict) -> tuple[dict, dict, np.ndarray]:
    """nutpie's (shared_data, shared_var_keys, user_data) for the model's current data, slots in
    ``meta['slots']`` order (the layout the generated module reads)."""
    from nutpie.compile_pymc import make_user_data

    named = {v.name: v for v in _arguments(model)}
    keys = {named[s]: f"d{i}" for i, s in enumerate(meta["slots"])}
    data = {}
    for var, k in keys.items():
        data[k] = np.array(var.get_value(), order="C", copy=True)
        data[k].flags.writeable = False
    return data, keys, make_user_data(keys, data)


def _transform_token(t) -> str:
    """A transform by class and settings (its repr carries a memory address)."""
    return "none" if t is None else f"{type(t).__module__}.{type(t).__qualname__}{sorted(vars(t).items())}"


def _graph(model) -> tuple[list, list, str]:
    """(outputs, inputs, extra) whose structure fixes the compiled functions: the model's random
    variables, deterministics, potentials and observed values (logp and the stored variables are
    functions of these, their transforms and ``check_bounds``; cheaper to hash than ``model.logp()``)."""
    observed = [model.rvs_to_values[rv] for rv in model.observed_RVs]
    outputs = [*model.basic_RVs, *model.deterministics, *model.potentials, *observed]
    transforms = [(rv.name, _transform_token(model.rvs_to_transforms.get(rv))) for rv in model.free_RVs]
    extra = f"{transforms} {[(v.name, str(v.type)) for v in model.value_vars]} {model.check_bounds}"
    return outputs, list(model.value_vars), extra


def _check_data(model, outputs) -> None:
    """Every shared variable of the graph must be one of the model's uniquely named ``_arguments``
    (they become the wrappers' arguments); else ValueError (the caller compiles the usual way)."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import graph_inputs

    arguments = _arguments(model)
    data = {id(v) for v in arguments}
    names = [v.name for v in arguments]
    for v in graph_inputs(outputs):
        if (
            isinstance(v, SharedVariable)
            and not _is_rng(v)
            and (id(v) not in data or names.count(v.name) != 1)
        ):
            raise ValueError(f"shared variable {v.name!r} is not a uniquely named argument of the model")


def structure_key(model, var_names=None) -> str:
    """The key of the model's compiled functions: :func:`graph_key` of :func:`_graph`, the stored
    variables and the data's shapes but along :func:`data_only_dims`."""
    outputs, inputs, extra = _graph(model)
    extra = f"{extra} {None if var_names is None else sorted(var_names)}"
    return graph_key(outputs, inputs, extra, model.named_vars_to_dims, data_only_dims(model, var_names))


def compile_by_structure(model, initial_points: dict | None, jitter_rvs, cache_dir: Path, var_names=None):
    """``nutpie.compile_pymc_model(model, ...)`` with the wrappers compiled once per structure
    (memory, then numba's cache under ``cache_dir``, then compiled); returns (compiled, CacheInfo).
    ``var_names``: the variables stored per draw (None: all)."""
    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _prepare_dims_and_coords,
        _rv_dict_to_flat_array_wrapper,
        _wrap_with_lock,
    )
    from pymc.initial_point import make_initial_point_fn

    _check_data(model, _graph(model)[0])
    key = structure_key(model, var_names)
    path = Path(cache_dir) / f"m_{key}.py"
    ipf = _wrap_with_lock(
        make_initial_point_fn(
            model=model, overrides=initial_points, jitter_rvs=jitter_rvs, return_transformed=True
        )
    )
    with _LOCK:
        source = "memory"
        if key not in _MEMORY:
            found, source = _warm(path), "disk"
            if found is None:
                found, source = _cold(model, ipf, path, key, var_names), "compiled"
            _MEMORY[key] = found
    logp, expand, meta = _MEMORY[key]
    names, slices, shapes = meta["shape_info"]
    shape_info = (names, [slice(a, b) for a, b in slices], [tuple(s) for s in shapes])
    reparameterized = [
        model.rvs_to_values[rv].name for rv in model.free_RVs if model.rvs_to_transforms.get(rv) is not None
    ]
    n_free = len(model.free_RVs)
    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized)
    data, keys, user_data = _user_data(model, meta)
    compiled = CompiledPyMCModel(
        _n_dim=meta["n_dim"],
        dims=dims,
        _coords=coords,
        _shapes={n: tuple(s) for n, s in zip(names, shape_info[2], strict=True)},
        compiled_logp_func=logp,
        compiled_expand_func=expand,
        initial_point_func=_rv_dict_to_flat_array_wrapper(
            ipf, names=names[:n_free], shapes=shape_info[2][:n_free]
        ),
        shared_data=data,
        shared_var_keys=keys,
        user_data=user_data,
        n_expanded=meta["n_expanded"],
        shape_info=shape_info,
        logp_func=None,
        expand_func=None,
        reparameterized_names=reparameterized,
    )
    return compiled, CacheInfo(key, source)

"""Which package files a workflow step runs, and one hash of them (the rules' ``params``).

A step's files are its module and, transitively, every ``qialign`` module it imports, at module
level or inside a function (read from the source with ``ast``, nothing is imported). Importing a
submodule runs its packages' ``__init__`` too; importing a name from a package itself
(``from qialign.alignment import standardise_over_clusters``) runs the package's ``__init__``,
whose own imports are followed in turn (no ``__init__`` imports by name at run time: no
``import_module``, no module ``__getattr__``; tests/test_sources.py checks). The command dispatcher
``cli.py`` is hashed as text but not followed (it imports every step lazily). So editing any
module a step imports re-runs that step, and editing one that it does not import leaves its
results current.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "qialign"
#: package data files and the module that reads them: a step running the module runs the data too
#: (so a changed schema default re-runs every step that fills its config from the schema)
DATA_FILES = {
    "config/schema.py": ("config/trial.schema.yaml",),
    "report/render.py": ("report/templates/template.html.j2",),
}


def package_modules(root: Path) -> dict[str, Path]:
    """Every module file under ``root`` (the package folder) by dotted name (``qialign.a.b``: a/b.py,
    else a/b/__init__.py), listed once per hash instead of tested path by path."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py"), key=lambda p: p.name == "__init__.py"):
        modules.setdefault(_dotted(root, path), path)
    return modules


def _dotted(root: Path, path: Path) -> str:
    rel = os.path.relpath(path, root).removesuffix(".py")  # strings: pathlib is slow for 120 files x 14
    parts = [p for p in rel.split(os.sep) if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def _statements(body: list) -> Iterator[ast.stmt]:
    """Every statement of ``body``, nested ones too (imports are statements: expressions are not
    visited, a tenth of the nodes of ``ast.walk``)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                yield from _statements(inner)


#: (root, path, source text) -> its imports: the workflow hashes every rule's steps, which share
#: most modules, so each file is parsed once per process (an edited file has a new key)
_PARSED: dict[tuple[str, str, str], frozenset[str]] = {}


def _imports(root: Path, path: Path) -> frozenset[str]:
    """Dotted names of the qialign modules (or module.attribute) that ``path`` imports."""
    text = path.read_text()
    key = (str(root), str(path), text)
    if key not in _PARSED:
        _PARSED[key] = frozenset(_parse_imports(root, path, text))
    return _PARSED[key]


def _parse_imports(root: Path, path: Path, text: str) -> set[str]:
    here = _dotted(root, path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in _statements(ast.parse(text).body):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] == PACKAGE:
                out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def _resolve(modules: dict[str, Path], dotted: str) -> set[Path]:
    """Files that importing ``dotted`` runs: the module (or a package's every module) and the
    ``__init__`` of each enclosing package."""
    parts = dotted.split(".")
    enclosing = (modules.get(".".join(parts[:i])) for i in range(2, len(parts)))
    files = {init for init in enclosing if init is not None and init.name == "__init__.py"}
    target = modules.get(dotted)  # None for ``from pkg.mod import name``: the name is not a module
    return files if target is None else files | {target}


def step_files(root: Path, entry: str, modules: dict[str, Path] | None = None) -> list[Path]:
    """Every package file the step module ``entry`` (a path relative to ``root``) runs; ``modules``:
    :func:`package_modules` of ``root`` (listed here if not given)."""
    modules = package_modules(root) if modules is None else modules
    start = root / entry
    seen, todo = {start}, [start]
    while todo:
        path = todo.pop()
        for dotted in _imports(root, path):
            for f in _resolve(modules, dotted) - seen:
                seen.add(f)
                todo.append(f)
    data = {root / d for module, names in DATA_FILES.items() if root / module in seen for d in names}
    return sorted(seen | data | {root / "__init__.py", root / "cli.py"})


def source_hash(root: str | Path, *entries: str) -> str:
    """A short hash of every file the ``entries`` run (non-Python entries, e.g. a schema, as is)."""
    root = Path(root)
    modules = package_modules(root)
    files: set[Path] = set()
    for entry in entries:
        files |= set(step_files(root, entry, modules)) if entry.endswith(".py") else {root / entry}
    digest = hashlib.sha256()
    for f in sorted(files):
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def put_environment_first_on_path() -> None:
    """Put the bin folder of the Python running this process first on PATH, so that the rules'
    ``qialign`` commands come from the environment that runs Snakemake (``.venv/bin/snakemake``
    works with nothing activated; local and SLURM jobs inherit the variable)."""
    here = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([here, os.environ.get("PATH", "")])

"""Every command the READMEs show runs as written in a fresh copy of the project (issue 13).

The commands are each line of a ```bash or ```sh block of README.md and benchmarks/README.md
(backslash continuations joined, ``# ...`` comments dropped) and each inline `...` span that starts
with ``.venv/bin/``, ``make `` or ``PATH=``. Each runs under bash in a copy of the tracked files
(``git ls-files``, modification times kept) whose ``.venv`` is a symlink to this interpreter's venv,
with that venv off PATH, as in a new shell. Where a command is not run exactly as written, it is
because of one of these rules (``check``):

- ``/tmp/...`` paths point into a scratch folder of the test instead (no files shared between runs);
- placeholders are substituted (``PLACEHOLDERS``: ``<id>`` is the shipped trial sicily_its); any
  other ``<name>`` fails the test;
- ``[--option value]`` (shown as optional) runs once without and once with the option;
- ``snakemake ...`` gets ``-n``: the plan must build without error, nothing is fitted;
- ``make X`` runs as ``make -n X`` after checking that the symlinked venv counts as installed (no
  install step planned: running one would reinstall the real venv from the copy); every recipe line
  it prints is then checked by these same rules, except that ``pytest ...`` only collects
  (``--collect-only -q``): ``make test`` must not run the suite from inside the suite;
- ``python benchmarks/<script>.py ...`` parses its options as written (argparse: names, types,
  choices) and stops before the benchmark itself, which takes minutes of fits;
- ``qialign <step> ... results/<trial>`` ("after a run") first builds what the step reads with the
  workflow's own rules, up to but not including the step (``PREREQUISITES``), then runs for real;
- ``snakemake --report`` is skipped: it needs every output of a full run;
- ``uv pip install -r <lock>`` (``make mutate``'s tool install) checks that the lock pins every
  package and is not run (it would install into the shared venv); ``mutmut ...`` (a mutation run takes
  tens of minutes) checks that every module and test file ``[tool.mutmut]`` names exists.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parents[1]
READMES = ("README.md", "benchmarks/README.md")
LANGS = ("bash", "sh")
INLINE_PREFIXES = (".venv/bin/", "make ", "PATH=")
PLACEHOLDERS = {"<id>": "sicily_its", "<trial>": "headsup_synthetic"}
# qialign step -> (a workflow output of that step, the rule writing it): its inputs are what the
# command needs from a run.
PREREQUISITES = {"power": ("results/{trial}/power.csv", "power")}
TIMEOUT = 300

# Run as `python -c "$README_PARSE_ONLY" script.py args...`: the script's argparse parser reads the
# arguments (exit 2 with argparse's message if it rejects one), then the script stops.
PARSE_ONLY = """
import argparse, runpy, sys
_parse = argparse.ArgumentParser.parse_known_args
def _stop(self, args=None, namespace=None):
    ns, extra = _parse(self, args, namespace)
    if extra:
        self.error("unrecognized arguments: " + " ".join(extra))
    print("README check: options parsed:", vars(ns))
    raise SystemExit(0)
argparse.ArgumentParser.parse_known_args = _stop
sys.argv = sys.argv[1:]
sys.path[0] = str(__import__("pathlib").Path(sys.argv[0]).resolve().parent)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


# ---------------------------------------------------------------- reading the commands


def fenced_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number of the opening fence, language, body lines) of each fenced block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = re.match(r"\s*```\s*(\S*)", lines[i])
        if opening:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
            blocks.append((i + 1, opening.group(1), lines[i + 1 : end]))
            i = end
        i += 1
    return blocks


def strip_comment(line: str) -> str:
    """``line`` without a shell comment (a ``#`` starting a word, outside quotes)."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
    return line.rstrip()


def block_commands(first_line: int, body: list[str]) -> list[tuple[int, str]]:
    """(line number, command) of each command of a shell block; continuations joined."""
    commands, pending, start = [], "", 0
    for k, raw in enumerate(body):
        line = strip_comment(raw) if not pending else raw.rstrip()
        if not pending:
            start = first_line + 1 + k
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        command = " ".join((pending + strip_comment(line)).split())
        pending = ""
        if command:
            commands.append((start, command))
    return commands


def commands_of(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every command ``text`` (a README) shows, in order."""
    lines = text.splitlines()
    found = []
    for first, lang, body in fenced_blocks(text):
        if lang in LANGS:
            found += block_commands(first, body)
        for k in range(first - 1, min(first + len(body) + 1, len(lines))):
            lines[k] = ""  # inline spans are searched outside fenced blocks only
    prose = "\n".join(lines)
    for span in re.finditer(r"`([^`]+)`", prose):
        command = " ".join(span.group(1).split())
        if command.startswith(INLINE_PREFIXES):
            found.append((prose.count("\n", 0, span.start()) + 1, command))
    return sorted(found)


def variants(command: str) -> list[str]:
    """``command`` without and with its optional ``[--option ...]`` parts."""
    optional = re.compile(r"\s*\[(-[^\]]*)\]")
    if not optional.search(command):
        return [command]
    return [optional.sub("", command), optional.sub(lambda m: " " + m.group(1), command)]


def _collect() -> list[tuple[str, str]]:
    """(README:line, command) of every command, each command once (where it is first shown)."""
    seen: dict[str, str] = {}
    for name in READMES:
        for line, command in commands_of((ROOT / name).read_text()):
            for variant in variants(command):
                seen.setdefault(variant, f"{name}:{line}")
    return [(where, command) for command, where in seen.items()]


COMMANDS = _collect()


# ---------------------------------------------------------------- running them


def fresh_copy(dest: Path) -> Path:
    """The tracked files of the project in ``dest`` (mtimes kept), ``.venv`` linked to this venv."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, check=True
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    (dest / ".venv").symlink_to(VENV, target_is_directory=True)
    return dest


def shell_env(project: Path) -> dict[str, str]:
    """A new shell's environment: no venv on PATH, no outer make; the copy's sources imported."""
    venv_bin = (VENV / "bin").resolve()
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p).resolve() != venv_bin]
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PATH=os.pathsep.join(path), PYTHONPATH=str(project / "src"), README_PARSE_ONLY=PARSE_ONLY)
    return env


def run(command: str, project: Path) -> subprocess.CompletedProcess:
    """``command`` under bash in ``project``; fails the test if it exits non-zero."""
    done = subprocess.run(
        ["bash", "-c", command], cwd=project, env=shell_env(project),
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"`{command}` exited {done.returncode} in a fresh copy of the project\n"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
    return done


def substitute(command: str, scratch: Path) -> str:
    """``/tmp/`` paths moved to ``scratch``, placeholders replaced (an unknown one fails)."""
    command = re.sub(r"(?<![\w./])/tmp/", f"{scratch}/", command)
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    unknown = re.findall(r"<\w+>", command)
    assert not unknown, f"no value for placeholder(s) {unknown} in `{command}`: add to PLACEHOLDERS"
    return command


def program(command: str) -> tuple[int, str]:
    """Index and text of the program token (after any ``NAME=value`` prefixes)."""
    tokens = shlex.split(command)
    k = next(k for k, token in enumerate(tokens) if not re.match(r"^\w+=", token))
    return k, tokens[k]


def with_flag(command: str, flag: str) -> str:
    """``command`` with ``flag`` right after its program."""
    k, prog = program(command)
    head = re.match(rf"^(\s*(?:\w+=\S*\s+){{{k}}}{re.escape(prog)})", command)
    assert head, f"cannot place {flag} after the program of `{command}`"
    return f"{head.group(1)} {flag}{command[head.end() :]}"


def build_prerequisites(command: str, project: Path) -> None:
    """Run the workflow rules whose outputs ``qialign <step> ... results/<trial>`` reads."""
    tokens = shlex.split(command)
    k, _ = program(command)
    trials = [m.group(1) for t in tokens if (m := re.match(r"results/([^/]+)", t))]
    if not trials:
        return
    step = tokens[k + 1]
    assert step in PREREQUISITES, f"`{command}` reads results/: add its step to PREREQUISITES"
    target, rule = PREREQUISITES[step]
    target = target.format(trial=trials[0])
    run(f".venv/bin/snakemake --cores 2 {target} --omit-from {rule}", project)


def check(command: str, project: Path) -> None:
    """Run ``command`` (already substituted) by the rules of the module docstring."""
    k, prog = program(command)
    tokens, name = shlex.split(command), Path(prog).name
    if name == "snakemake":
        if "--report" in tokens:
            pytest.skip(f"`{command}` needs every output of a full run (make run)")
        run(f"{command} -n", project)
    elif name == "make":
        planned = run(with_flag(command, "-n"), project).stdout
        assert ".venv/.installed" not in planned, (
            f"`{command}` plans to (re)install the venv (is .venv/.installed older than requirements.lock"
            f" or pyproject.toml? run `make .venv/.installed`); not run into the shared venv:\n{planned}"
        )
        for line in filter(str.strip, planned.splitlines()):
            check(line, project)
    elif name == "pytest":
        run(f"{command} --collect-only -q", project)
    elif name == "uv":
        lock = project / tokens[tokens.index("-r") + 1]
        lines = [ln for ln in lock.read_text().splitlines() if ln.strip()]
        assert lines and all(re.fullmatch(r"[\w.-]+==[\w.]+", ln) for ln in lines), f"{lock} is not pinned"
    elif name == "mutmut":
        cfg = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["mutmut"]
        named = cfg["source_paths"] + cfg["pytest_add_cli_args_test_selection"]
        missing = [p for p in named if not (project / p).is_file()]
        assert named and not missing, f"[tool.mutmut] names missing files: {missing}"
    elif name.startswith("python") and tokens[k + 1 : k + 2] and tokens[k + 1].startswith("benchmarks/"):
        parsed = run(with_flag(command, '-c "$README_PARSE_ONLY"'), project)
        assert "README check: options parsed" in parsed.stdout, parsed.stdout
    else:
        if name == "qialign":
            build_prerequisites(command, project)
        run(command, project)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return fresh_copy(tmp_path_factory.mktemp("fresh_clone"))


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[f"{w} {c}"[:90] for w, c in COMMANDS])
def test_readme_command_runs_as_written(where, command, project, tmp_path):
    check(substitute(command, tmp_path), project)


def test_every_fenced_block_of_the_readmes_is_a_shell_block_this_test_reads():
    """A command block without ``bash``/``sh`` (or with another language) would escape the test."""
    for name in READMES:
        for line, lang, body in fenced_blocks((ROOT / name).read_text()):
            assert lang in LANGS, f"{name}:{line}: fenced block labelled {lang!r}, not one of {LANGS}"
            assert block_commands(line, body), f"{name}:{line}: a shell block with no command"


def test_commands_of_joins_continuations_drops_comments_and_finds_inline_commands():
    text = "\n".join(
        [
            "Run `make run` (or see `qialign --help`).",
            "```bash",
            "# a comment line",
            ".venv/bin/qialign power a.yaml --root results/x \\",
            "    --out /tmp/p.csv   # after a run",
            "",
            "echo 'a # not a comment' \"b#c\"  # but this is",
            "```",
            "Or `.venv/bin/snakemake --config 'trials=[\"<id>\"]'`.",
        ]
    )
    assert commands_of(text) == [
        (1, "make run"),
        (4, ".venv/bin/qialign power a.yaml --root results/x --out /tmp/p.csv"),
        (7, "echo 'a # not a comment' \"b#c\""),
        (9, ".venv/bin/snakemake --config 'trials=[\"<id>\"]'"),
    ]


def test_variants_substitute_and_with_flag(tmp_path):
    assert variants("py b.py [--model binomial]") == ["py b.py", "py b.py --model binomial"]
    assert variants("x --config 'trials=[\"<id>\"]'") == ["x --config 'trials=[\"<id>\"]'"]
    assert substitute("q --out /tmp/sim 'trials=[\"<id>\"]'", tmp_path) == (
        f"q --out {tmp_path}/sim 'trials=[\"sicily_its\"]'"
    )
    with pytest.raises(AssertionError, match="<cluster>"):
        substitute("q <cluster>", tmp_path)
    assert with_flag("PATH=$PWD/b:$PATH make run", "-n") == "PATH=$PWD/b:$PATH make -n run"
    assert program("A=1 B=2 .venv/bin/snakemake -n") == (2, ".venv/bin/snakemake")

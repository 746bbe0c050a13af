"""Wall time of a full default run (`snakemake --cores 2` on the shipped trial) from scratch.

Copies the project (Snakefile, workflow, config, resources, src) to a temporary folder so the repo's
results/ are untouched, runs the whole workflow, and prints the total wall time plus each fit's
compile and sampling seconds (from fit.json). The compile cache (.cache/) is shared with the repo, so
run it twice to see cold and warm figures. ``--without robustness`` switches every trial's battery
off, ``--without synthesis`` drops the synthesis block and the trials only it needs, so that the
difference of two runs is the wall time a piece adds.

Usage: python benchmarks/full_run.py [--cores 2] [--keep] [--without robustness|synthesis ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary project")
    ap.add_argument("--without", nargs="*", default=[], choices=["robustness", "synthesis"])
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="qialign-fullrun-"))
    for item in ("Snakefile", "workflow", "config", "resources", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    _switch_off(work / "config", args.without)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.setdefault("QIALIGN_CACHE_DIR", str(ROOT / ".cache"))
    t0 = time.perf_counter()
    run = subprocess.run([str(BIN / "snakemake"), "--cores", str(args.cores), "--quiet"], cwd=work, env=env,
                         capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-4000:], sep="\n")
        return 1
    without = f", without {' and '.join(args.without)}" if args.without else ""
    print(f"full default run{without}: {wall:.0f} s wall on {args.cores} cores ({work})")
    print(f"{'fit':32s} {'compile_s':>9s} {'sample_s':>9s} {'retried':>8s} {'reliable':>8s}")
    for record in sorted(work.glob("results/*/*/*/fit.json")):
        fit = json.loads(record.read_text())
        print(
            f"{fit['outcome'] + '/' + fit['model']:32s} {fit['timings']['compile_s']:9.1f} "
            f"{fit['timings']['sample_s']:9.1f} {fit['retried']!s:>8s} {fit['reliable']!s:>8s}"
        )
    if not args.keep:
        shutil.rmtree(work)
    return 0


def _switch_off(config: Path, pieces: list[str]) -> None:
    """Edit the copied configs: no robustness battery, or no synthesis (and no synthesis-only trial)."""
    top = yaml.safe_load((config / "config.yaml").read_text())
    if "synthesis" in pieces and "synthesis" in top:
        only = [t for t in top.pop("synthesis")["trials"] if t != top["trials"][0]]
        top["trials"] = [t for t in top["trials"] if t not in only]
    if "robustness" in pieces:
        for trial in top["trials"]:
            path = config / "trials" / f"{trial}.yaml"
            cfg = yaml.safe_load(path.read_text())
            cfg["robustness"] = {**(cfg.get("robustness") or {}), "enabled": False}
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (config / "config.yaml").write_text(yaml.safe_dump(top, sort_keys=False))


if __name__ == "__main__":
    sys.exit(main())

"""SBC steps: ``qialign sbc chunk`` (fit one chunk of replicates) and ``qialign sbc summarise``
(ranks.csv, summary.csv, report.html); the same for ``config/power_sim.yaml``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from qialign.progress import Countdown, say

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that light
    import pandas as pd


def sbc_chunk_step(config_path: str | Path, model: str, chunk: int, out: Path) -> pd.DataFrame:
    """Fit the replicates of one chunk of one model and write their rows
    (``qialign.studies.sbc.COLUMNS``) to ``out``."""
    from qialign.studies.sbc import chunk_replicates, run_replicates
    from qialign.studies.sbc_config import load_sbc_config, model_config

    cfg = model_config(load_sbc_config(config_path), model)
    reps = chunk_replicates(cfg, int(chunk))
    s = cfg["sampler"]
    say(
        f"SBC {model} ({cfg['family']}, {cfg['propagation']}) chunk {chunk}/{cfg['chunks']}: "
        f"replicates {reps[0]}..{reps[-1]} ({len(reps)}); "
        f"{s['chains']} chains x ({s['tune']} tune + {s['draws']} draws), target_accept "
        f"{s['target_accept']}, cores {s['cores']}"
    )
    t0 = time.perf_counter()
    table = run_replicates(cfg, reps, progress=Countdown(len(reps), "replicate").tick)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    say(f"wrote {len(table)} rows to {out} in {time.perf_counter() - t0:.0f} s")
    return table


def sbc_summarise_step(config_path: str | Path, chunks: list[Path], out_dir: Path) -> pd.DataFrame:
    """Concatenate every model's chunks into ``ranks.csv``, test them (``summary.csv``, one row per
    model x parameter), write ``report.html`` (every model)."""
    from qialign.report.calibration import render_sbc_report
    from qialign.studies.ranks import summarise_study
    from qialign.studies.sbc import read_chunks
    from qialign.studies.sbc_config import load_sbc_config

    cfg = load_sbc_config(config_path)
    ranks = read_chunks(chunks)
    for name, model in cfg["models"].items():
        n_reps = ranks.loc[ranks["model"] == name, "replicate"].nunique()
        if n_reps < int(model["replicates"]):
            say(f"warning: model {name}: {n_reps} of {model['replicates']} replicates in the chunks")
    summary = summarise_study(ranks, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ranks.to_csv(out_dir / "ranks.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    render_sbc_report(ranks, summary, cfg, out_dir / "report.html")
    cols = [
        "model",
        "parameter",
        "replicates",
        "chi2_p",
        "ecdf_p",
        "coverage",
        "coverage_lower",
        "coverage_upper",
    ]
    print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(json.dumps({"models": sorted(set(ranks["model"])), "out_dir": str(out_dir)}))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``chunk`` and ``summarise`` subcommands of ``qialign sbc``."""
    sub = parser.add_subparsers(dest="sbc_step", required=True, metavar="SBC_STEP")
    p = sub.add_parser("chunk", help="fit one chunk of SBC replicates")
    p.add_argument("--config", required=True, help="SBC settings, e.g. config/sbc.yaml")
    p.add_argument("--model", required=True, help="a name under models: in the config, e.g. binomial")
    p.add_argument("--chunk", required=True, type=int, help="chunk index, 0..chunks-1")
    p.add_argument("--out", required=True, help="e.g. results/sbc/binomial/chunk_0.csv")
    p = sub.add_parser("summarise", help="rank tests, coverage and the HTML page from the chunks")
    p.add_argument("--config", required=True, help="SBC settings")
    p.add_argument("--chunks", nargs="+", required=True, help="chunk_<i>.csv files of every model")
    p.add_argument("--out-dir", required=True, help="folder for ranks.csv, summary.csv, report.html")


def run(args: argparse.Namespace) -> None:
    if args.sbc_step == "chunk":
        sbc_chunk_step(args.config, args.model, args.chunk, Path(args.out))
    else:
        sbc_summarise_step(args.config, [Path(p) for p in args.chunks], Path(args.out_dir))

"""Command line: ``qialign <step>``. Each step is one package function; user mistakes exit 2, no traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qialign import __version__
from qialign.errors import QialignError
from qialign.inference.compile_cache import configure_compile
from qialign.progress import attach_terminal, timed_step

# each step is imported when its command runs, so that `qialign --help` and the light steps do not
# import PyMC; the sampling steps configure the compile cache first (before PyTensor is imported)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _validate(args: argparse.Namespace) -> None:
    from qialign.steps.prepare import validate_trial

    print(validate_trial(args.config, _path(args.out), _path(args.data_json)))


def _prepare(args: argparse.Namespace) -> None:
    from qialign.steps.prepare import prepare_outcome

    prepare_outcome(args.config, args.outcome, Path(args.out_dir))


def _alignment(args: argparse.Namespace) -> None:
    configure_compile()
    from qialign.steps.alignment import alignment_scores

    scores = alignment_scores(args.config, Path(args.out))
    print(f"wrote {len(scores)} alignment score row(s) to {args.out}")


def _simulate(args: argparse.Namespace) -> None:
    from qialign.studies.simulate import simulate_to_dir

    simulate_to_dir(Path(args.spec), Path(args.out))
    print(f"wrote simulated trial to {args.out}")


def _fit(args: argparse.Namespace) -> None:
    configure_compile()
    from qialign.steps.fit import fit_step

    fit_step(
        args.config,
        args.outcome,
        args.model,
        Path(args.prepared),
        Path(args.scores),
        Path(args.out_dir),
        threads=args.threads,
    )


def _crosscheck(args: argparse.Namespace) -> None:
    from qialign.steps.crosscheck import crosscheck_step

    table = crosscheck_step(args.config, args.outcome, Path(args.prepared), Path(args.scores), Path(args.out))
    print(table.to_string(index=False))


def _collect(args: argparse.Namespace) -> None:
    from qialign.steps.collect import collect_estimates

    table = collect_estimates(
        [Path(p) for p in args.bayes], [Path(p) for p in args.crosschecks], Path(args.out)
    )
    print(f"wrote {len(table)} estimate rows to {args.out}")


def _compare(args: argparse.Namespace) -> None:
    from qialign.steps.collect import compare_models

    posteriors = {Path(p).parent.name: Path(p) for p in args.posteriors}
    print(compare_models(posteriors, Path(args.out)).to_string(index=False))


def _power(args: argparse.Namespace) -> None:
    from qialign.steps.power import power_step

    scores = Path(args.scores) if args.scores else None
    table = power_step(args.config, Path(args.prepared_root), Path(args.out), scores, args.target)
    print(f"wrote {len(table)} power row(s) to {args.out}")
    if table.empty:
        return
    cols = ["design", "clusters", "m", "icc", "cac", "estimand", "effect", "se", "df", "power", "mde"]
    shown = table[table["search"] == (args.solve or "grid")]
    if args.solve:
        target = table["target"].iloc[0]
        print(f"smallest {args.solve.replace('_', ' ')} reaching power {target:g} (ICC on the "
              f"{table['icc_scale'].iloc[0]} scale):")  # fmt: skip
        if shown.empty:
            print("no effects configured (power.effects, power.interaction_effects): nothing to solve")
            return
        cols = ["clusters" if args.solve == "clusters" else "m", "icc", "cac", "iac", "decay"]
        cols += ["estimand", "effect", "power"]
    print(shown[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _report(args: argparse.Namespace) -> None:
    from qialign.report import render_report

    render_report(Path(args.results), Path(args.config), Path(args.out), [Path(p) for p in args.logs])
    print(f"wrote {args.out}")


def _robustness(args: argparse.Namespace) -> None:
    from qialign.steps.robustness import robustness_step

    record = robustness_step(args.config, args.outcome, Path(args.results), Path(args.out_dir))
    print(record["text"])


def _add_robustness(steps) -> None:
    p = steps.add_parser(
        "robustness", help="one outcome's robustness battery: variants, permutation, placebo, priors"
    )
    p.add_argument("config", help="trial config (its robustness: block)")
    p.add_argument("--outcome", required=True)
    p.add_argument("--results", required=True, help="results/<trial>/<outcome>: the fits and cells.parquet")
    p.add_argument("--out-dir", required=True, help="e.g. results/<trial>/<outcome>/robustness")
    p.set_defaults(func=_robustness)


def _init(args: argparse.Namespace) -> None:
    from qialign.init import init_trial

    out = args.out or f"config/trials/{args.id}.yaml"
    tables = {k: getattr(args, k) for k in ("patients", "cluster_periods", "clusters", "survey")}
    print(init_trial(args.id, out, force=args.force, clusters_out=args.clusters_out, **tables))


def _sbc(args: argparse.Namespace) -> None:
    configure_compile()
    from qialign.steps.sbc import run

    run(args)


def _add_init(steps) -> None:
    p = steps.add_parser("init", help="draft config/trials/<id>.yaml from your data files, then validate it")
    p.add_argument("id", help="trial id (letters, digits, _): names the config and results/<id>/")
    p.add_argument("--patients", help="patient-level table (CSV or Parquet)")
    p.add_argument("--cluster-periods", help="cluster-period table instead of patients")
    p.add_argument("--clusters", help="clusters table (cluster, start_period); else derived from treatment")
    p.add_argument("--survey", help="staff survey table (respondent, cluster, role, item columns)")
    p.add_argument("--out", help="config file to write (default config/trials/<id>.yaml)")
    p.add_argument("--clusters-out", help="where a derived clusters table goes (default beside the data)")
    p.add_argument("--force", action="store_true", help="overwrite an existing config")
    p.set_defaults(func=_init)


def _add_power(steps) -> None:
    p = steps.add_parser("power", help="analytic power (GLS) of the trial's schedule, for planning")
    p.add_argument("config", help="trial config (its power: block)")
    p.add_argument("--prepared-root", required=True, help="results/<trial>: holds <outcome>/cells.parquet")
    p.add_argument("--out", required=True, help="e.g. results/<trial>/power.csv")
    p.add_argument("--scores", help="alignment scores CSV: the interaction uses the trial's own alignment")
    p.add_argument(
        "--solve",
        choices=("clusters", "cluster_size"),
        help="print the smallest number of clusters or patients per cluster-period reaching the target",
    )
    p.add_argument("--target", type=float, help="target power (default: the config's power.target)")
    p.set_defaults(func=_power)


def _synthesis(args: argparse.Namespace) -> None:
    configure_compile()
    from qialign.steps.synthesis import synthesis_step

    synthesis_step(Path(args.config), Path(args.trials_dir), Path(args.results), Path(args.out_dir))
    print(f"wrote the synthesis to {args.out_dir}")


def _synthesis_report(args: argparse.Namespace) -> None:
    from qialign.report.synthesis_page import render_synthesis_report

    render_synthesis_report(Path(args.results), Path(args.out), [Path(p) for p in args.logs])


def _add_synthesis(steps) -> None:
    p = steps.add_parser("synthesis", help="pool the trials' ward effects and regress them on alignment")
    p.add_argument("config", help="workflow config with a synthesis: block, e.g. config/config.yaml")
    p.add_argument("--trials-dir", required=True, help="folder of the trial configs, e.g. config/trials")
    p.add_argument("--results", required=True, help="results root holding results/<trial>/")
    p.add_argument("--out-dir", required=True, help="e.g. results/synthesis")
    p.set_defaults(func=_synthesis)
    p = steps.add_parser("synthesis-report", help="render the synthesis's self-contained HTML report")
    p.add_argument("--results", required=True, help="the synthesis's results folder, e.g. results/synthesis")
    p.add_argument("--out", required=True, help="HTML file, e.g. reports/synthesis/report.html")
    p.add_argument("--logs", nargs="*", default=[], help="step logs to link from the report")
    p.set_defaults(func=_synthesis_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qialign", description="Evaluate quality-improvement trials under the model of alignment."
    )
    parser.add_argument("--version", action="version", version=f"qialign {__version__}")
    parser.add_argument("--progress-fd", type=int, metavar="FD", help="also write progress lines to FD")
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    _add_init(steps)
    p = steps.add_parser("validate", help="validate a trial's config and data; print a summary")
    p.add_argument("config", help="trial config, e.g. config/trials/headsup_synthetic.yaml")
    p.add_argument("--out", help="also write the summary to this file")
    p.add_argument("--data-json", help="also write a JSON record of files, hashes and exclusions")
    p.set_defaults(func=_validate)

    p = steps.add_parser("prepare", help="write one outcome's analysis rows and cluster-period cells")
    p.add_argument("config", help="trial config")
    p.add_argument("--outcome", required=True, help="outcome name (a key of outcomes:)")
    p.add_argument("--out-dir", required=True, help="folder for rows.parquet, cells.parquet, prepared.json")
    p.set_defaults(func=_prepare)

    p = steps.add_parser("alignment", help="score cluster alignment (survey or given) into a CSV")
    p.add_argument("config", help="trial config")
    p.add_argument("--out", required=True, help="scores CSV, e.g. results/<trial>/alignment/scores.csv")
    p.set_defaults(func=_alignment)

    p = steps.add_parser("simulate", help="simulate a trial from a spec (YAML) into contract tables")
    p.add_argument("spec", help="simulation spec, e.g. resources/headsup_synthetic/simulation.yaml")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_simulate)

    p = steps.add_parser("fit", help="fit one outcome x model (PyMC, nutpie) and write its results")
    p.add_argument("config", help="trial config")
    p.add_argument("--outcome", required=True)
    p.add_argument("--model", required=True, help="model id from the trial's models:")
    p.add_argument("--prepared", required=True, help="folder with cells.parquet and prepared.json")
    p.add_argument("--scores", required=True, help="alignment scores CSV")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=int, help="chains sampled in parallel (caps sampler.cores)")
    p.set_defaults(func=_fit)

    p = steps.add_parser("crosscheck", help="frequentist cross-checks (GEE, MixedLM, GLM) of one outcome")
    p.add_argument("config", help="trial config")
    p.add_argument("--outcome", required=True)
    p.add_argument("--prepared", required=True, help="folder with rows.parquet and prepared.json")
    p.add_argument("--scores", required=True, help="alignment scores CSV")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_crosscheck)

    _add_power(steps)
    _add_synthesis(steps)

    p = steps.add_parser("compare", help="PSIS-LOO comparison of one outcome's model variants")
    p.add_argument("posteriors", nargs="+", help="posterior.nc files (named by their folder)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_compare)

    p = steps.add_parser("collect", help="gather all estimates into one table")
    p.add_argument("config", help="trial config")
    p.add_argument("--bayes", nargs="+", required=True, help="per-fit estimates.csv files")
    p.add_argument("--crosschecks", nargs="*", default=[], help="per-outcome crosscheck.csv files")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_collect)

    p = steps.add_parser("report", help="render the trial's self-contained HTML report")
    p.add_argument("config", help="trial config")
    p.add_argument("--results", required=True, help="the trial's results folder, e.g. results/<trial>")
    p.add_argument("--out", required=True, help="HTML file, e.g. reports/<trial>/report.html")
    p.add_argument("--logs", nargs="*", default=[], help="step logs to link from the report")
    p.set_defaults(func=_report)

    _add_robustness(steps)

    from qialign.steps.sbc import add_arguments as sbc_arguments  # stdlib-only import

    p = steps.add_parser("sbc", help="simulation-based calibration of the outcome model (config/sbc.yaml)")
    sbc_arguments(p)
    p.set_defaults(func=_sbc)
    return parser


#: steps long enough to announce, with what names one run of them (for its learnt duration)
TIMED_STEPS = {
    "fit": lambda a: (Path(a.config).stem, a.outcome, a.model),
    "crosscheck": lambda a: (Path(a.config).stem, a.outcome),
    "alignment": lambda a: (Path(a.config).stem,),
    "report": lambda a: (Path(a.config).stem,),
    "synthesis": lambda a: ("synthesis",),
    "sbc": lambda a: (Path(a.config).stem, a.model, f"chunk {a.chunk}") if a.sbc_step == "chunk" else None,
}


def _run(args: argparse.Namespace) -> None:
    """The step, announced with its expected time when it is a long one (``qialign.progress``)."""
    key = TIMED_STEPS[args.step](args) if args.step in TIMED_STEPS else None
    if key is None:
        args.func(args)
        return
    with timed_step(args.step, key):
        args.func(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    attach_terminal(args.progress_fd)
    try:
        _run(args)
    except QialignError as exc:
        print(f"qialign {args.step}: error\n{exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

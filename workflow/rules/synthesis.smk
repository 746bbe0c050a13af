# Synthesis across trials (config `synthesis:`): in `all` when the block is present.
from qialign.synthesis.config import load_synthesis
from qialign.synthesis.inputs import trial_files

try:  # the block checked against the trials it names, one screen, never a traceback
    SYNTHESIS = load_synthesis(config, TRIAL_CFG)
except QialignError as exc:
    sys.exit(f"qialign: {exc}")


def synthesis_inputs(wildcards):
    """Every file the synthesis reads: each pooled trial's fit posterior, record and scores."""
    return [
        str(path)
        for trial, pick in SYNTHESIS["trials"].items()
        for path in trial_files("results", trial, pick["outcome"], pick["model"]).values()
    ]


def synthesis_targets():
    return ["reports/synthesis/report.html"] if SYNTHESIS else []


rule synthesis:
    input:
        config="config/config.yaml",
        trials=lambda wc: [trial_config_path(t) for t in SYNTHESIS["trials"]],
        fits=synthesis_inputs,
    output:
        estimates="results/synthesis/estimates.csv",
        wards="results/synthesis/wards.csv",
        posterior="results/synthesis/posterior.nc",
        record="results/synthesis/synthesis.json",
    log:
        "results/synthesis/logs/synthesis.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        code=source_hash("steps/synthesis.py"),
        block=lambda wc: SYNTHESIS,
    shell:
        "qialign --progress-fd 3 synthesis {input.config} --trials-dir {config[trials_dir]} --results results "
        "--out-dir results/synthesis 3>&2 > {log} 2>&1"


rule synthesis_report:
    input:
        estimates="results/synthesis/estimates.csv",
        wards="results/synthesis/wards.csv",
        record="results/synthesis/synthesis.json",
    output:
        report(
            "reports/synthesis/report.html",
            caption="../report/synthesis.rst",
            category="Synthesis",
        ),
    log:
        "results/synthesis/logs/report.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=source_hash("report/synthesis_page.py"),
        logs=["results/synthesis/logs/synthesis.log"],
    shell:
        "qialign --progress-fd 3 synthesis-report --results results/synthesis --out {output} "
        "--logs {params.logs} 3>&2 > {log} 2>&1"

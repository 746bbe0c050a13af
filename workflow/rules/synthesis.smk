# Synthesis across trials (config `synthesis:`): in `all` when the block is present. The block is
# checked and its inputs listed in common.smk (SYNTHESIS, synthesis_inputs, synthesis_targets).


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
        trials_dir=config["trials_dir"],
    shell:
        "qialign --progress-fd 3 synthesis {input.config} --trials-dir {params.trials_dir} --results results "
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

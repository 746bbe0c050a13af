# The robustness battery (qialign.robustness): variants of the primary model are fitted by rule
# fit as their own jobs (common.smk: ROBUSTNESS), then one robustness step per battery outcome.


rule robustness:
    input:
        config=lambda wc: trial_config_path(wc.trial),
        cells="results/{trial}/{outcome}/cells.parquet",
        posterior=lambda wc: primary_fit(wc, FIT_FILES["posterior"]),
        primary=lambda wc: primary_fit(wc, FIT_FILES["estimates"]),
        variants=lambda wc: variant_fit_outputs(
            wc.trial, FIT_FILES["estimates"], wc.outcome
        ),
        records=lambda wc: variant_fit_outputs(
            wc.trial, FIT_FILES["record"], wc.outcome
        ),
    output:
        **ROBUSTNESS_OUTPUTS,
    log:
        "results/{trial}/logs/robustness_{outcome}.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=source_hash("steps/robustness.py"),
    shell:
        "qialign --progress-fd 3 robustness {input.config} --outcome {wildcards.outcome} "
        "--results results/{wildcards.trial}/{wildcards.outcome} "
        "--out-dir results/{wildcards.trial}/{wildcards.outcome}/robustness 3>&2 > {log} 2>&1"

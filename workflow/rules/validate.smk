rule validate:
    input:
        trial_inputs,
    output:
        summary="results/{trial}/validation.txt",
        data="results/{trial}/data.json",
    log:
        "results/{trial}/logs/validate.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=lambda wc: trial_config_path(wc.trial),
        code=source_hash("steps/prepare.py"),
    shell:
        "qialign --progress-fd 3 validate {params.config} --out {output.summary} --data-json {output.data} 3>&2 > {log} 2>&1"


rule prepare:
    input:
        trial_inputs,
        summary="results/{trial}/validation.txt",
    output:
        rows="results/{trial}/{outcome}/rows.parquet",
        cells="results/{trial}/{outcome}/cells.parquet",
        record="results/{trial}/{outcome}/prepared.json",
    log:
        "results/{trial}/logs/prepare_{outcome}.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        config=lambda wc: trial_config_path(wc.trial),
        code=source_hash("steps/prepare.py"),
    shell:
        "qialign --progress-fd 3 prepare {params.config} --outcome {wildcards.outcome} "
        "--out-dir results/{wildcards.trial}/{wildcards.outcome} 3>&2 > {log} 2>&1"


rule alignment:
    input:
        trial_inputs,
        summary="results/{trial}/validation.txt",
    output:
        scores="results/{trial}/alignment/scores.csv",
        change="results/{trial}/alignment/change.csv",
        draws="results/{trial}/alignment/alignment_draws.csv",
    log:
        "results/{trial}/logs/alignment.log",
    conda:
        "../envs/qialign.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=lambda wc: trial_config_path(wc.trial),
        code=source_hash("steps/alignment.py"),
    shell:
        "qialign --progress-fd 3 alignment {params.config} --out {output.scores} 3>&2 > {log} 2>&1"

rule fit:
    input:
        cells="results/{trial}/{outcome}/cells.parquet",
        record="results/{trial}/{outcome}/prepared.json",
        scores="results/{trial}/alignment/scores.csv",
        draws="results/{trial}/alignment/alignment_draws.csv",
        survey=lambda wc: joint_survey(wc.trial),
        config=lambda wc: trial_config_path(wc.trial),
    output:
        **FIT_OUTPUTS,
    log:
        "results/{trial}/logs/fit_{outcome}_{model}.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        code=source_hash("steps/fit.py"),
    shell:
        "qialign --progress-fd 3 fit {input.config} --outcome {wildcards.outcome} --model {wildcards.model} "
        "--prepared results/{wildcards.trial}/{wildcards.outcome} --scores {input.scores} "
        "--out-dir results/{wildcards.trial}/{wildcards.outcome}/{wildcards.model} --threads {threads} "
        "3>&2 > {log} 2>&1"


rule crosscheck:
    input:
        rows="results/{trial}/{outcome}/rows.parquet",
        record="results/{trial}/{outcome}/prepared.json",
        scores="results/{trial}/alignment/scores.csv",
        config=lambda wc: trial_config_path(wc.trial),
    output:
        "results/{trial}/{outcome}/crosscheck.csv",
    log:
        "results/{trial}/logs/crosscheck_{outcome}.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=source_hash("steps/crosscheck.py"),
    shell:
        "qialign --progress-fd 3 crosscheck {input.config} --outcome {wildcards.outcome} "
        "--prepared results/{wildcards.trial}/{wildcards.outcome} --scores {input.scores} "
        "--out {output} 3>&2 > {log} 2>&1"


rule compare:
    input:
        posteriors=lambda wc: fit_outputs(wc.trial, "posterior.nc", wc.outcome),
    output:
        "results/{trial}/{outcome}/loo.csv",
    log:
        "results/{trial}/logs/compare_{outcome}.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=source_hash("steps/collect.py"),
    shell:
        "qialign --progress-fd 3 compare {input.posteriors} --out {output} 3>&2 > {log} 2>&1"


rule collect:
    input:
        config=lambda wc: trial_config_path(wc.trial),
        bayes=lambda wc: fit_outputs(wc.trial, "estimates.csv")
        + variant_fit_outputs(wc.trial, "estimates.csv"),
        crosschecks=lambda wc: [
            f"results/{wc.trial}/{o}/crosscheck.csv" for o in outcomes_of(wc.trial)
        ],
    output:
        "results/{trial}/estimates.csv",
    log:
        "results/{trial}/logs/collect.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=source_hash("steps/collect.py"),
    shell:
        "qialign --progress-fd 3 collect {input.config} --bayes {input.bayes} "
        "--crosschecks {input.crosschecks} --out {output} 3>&2 > {log} 2>&1"


rule power:
    input:
        cells=lambda wc: power_cells(wc.trial),
        scores="results/{trial}/alignment/scores.csv",
        config=lambda wc: trial_config_path(wc.trial),
    output:
        "results/{trial}/power.csv",
    log:
        "results/{trial}/logs/power.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=source_hash("steps/power.py"),
    shell:
        "qialign --progress-fd 3 power {input.config} --prepared-root results/{wildcards.trial} "
        "--scores {input.scores} --out {output} 3>&2 > {log} 2>&1"


rule report:
    input:
        config=lambda wc: trial_config_path(wc.trial),
        estimates="results/{trial}/estimates.csv",
        power="results/{trial}/power.csv",
        loo=lambda wc: [
            f"results/{wc.trial}/{o}/loo.csv" for o in outcomes_of(wc.trial)
        ],
        fits=lambda wc: fit_outputs(wc.trial, "fit.json"),
        scores="results/{trial}/alignment/scores.csv",
        data="results/{trial}/data.json",
        robustness=lambda wc: robustness_outputs(wc.trial),
    output:
        report(
            "reports/{trial}/report.html",
            caption="../report/report.rst",
            category="Trial reports",
        ),
    log:
        "results/{trial}/logs/report.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=source_hash("report/__init__.py"),
        logs=lambda wc: trial_logs(wc.trial) + robustness_logs(wc.trial),
    shell:
        "qialign --progress-fd 3 report {input.config} --results results/{wildcards.trial} --out {output} "
        "--logs {params.logs} 3>&2 > {log} 2>&1"

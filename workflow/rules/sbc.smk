# Replicated simulate-and-fit studies of the outcome model, one settings file each:
# `snakemake sbc` (config/sbc.yaml: everything from the prior = calibration, plus Bayesian
# assurance) and `snakemake power_sim` (config/power_sim.yaml: effects fixed = simulation-based
# power). Every model of a study (models: in its config) is split into chunks of replicates that
# run as parallel one-core jobs; one page shows every model.
wildcard_constraints:
    study="|".join(STUDIES),


rule sbc_chunk:
    input:
        config="config/{study}.yaml",
    output:
        "results/{study}/{sbc_model}/chunk_{chunk}.csv",
    log:
        "results/{study}/logs/{sbc_model}_chunk_{chunk}.log",
    wildcard_constraints:
        chunk=r"\d+",
        sbc_model="[A-Za-z_][A-Za-z0-9_]*",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        code=source_hash("steps/sbc.py"),
    shell:
        "qialign --progress-fd 3 sbc chunk --config {input.config} --model {wildcards.sbc_model} "
        "--chunk {wildcards.chunk} --out {output} "
        "3>&2 > {log} 2>&1"


rule sbc_summarise:
    input:
        config="config/{study}.yaml",
        chunks=lambda wc: study_chunks(wc.study),
    output:
        ranks="results/{study}/ranks.csv",
        summary="results/{study}/summary.csv",
        report="results/{study}/report.html",
    log:
        "results/{study}/logs/summarise.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=source_hash("steps/sbc.py"),
    shell:
        "qialign --progress-fd 3 sbc summarise --config {input.config} --chunks {input.chunks} "
        "--out-dir results/{wildcards.study} 3>&2 > {log} 2>&1"


rule sbc:
    input:
        "results/sbc/summary.csv",
        "results/sbc/report.html",


rule power_sim:
    input:
        "results/power_sim/summary.csv",
        "results/power_sim/report.html",

# Simulation-based calibration of the outcome model: `snakemake sbc`. Settings in config/sbc.yaml;
# its replicates are split into chunks that run as parallel one-core jobs.
SBC_CONFIG = "config/sbc.yaml"
SBC_CHUNKS = range(int(yaml.safe_load(Path(SBC_CONFIG).read_text())["chunks"]))


rule sbc_chunk:
    input:
        config=SBC_CONFIG,
    output:
        "results/sbc/chunk_{chunk}.csv",
    log:
        "results/sbc/logs/chunk_{chunk}.log",
    wildcard_constraints:
        chunk=r"\d+",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        code=source_hash("sbc.py", "steps/sbc.py", "models"),
    shell:
        "qialign sbc chunk --config {input.config} --chunk {wildcards.chunk} --out {output} "
        "> {log} 2>&1"


rule sbc_summarise:
    input:
        config=SBC_CONFIG,
        chunks=expand("results/sbc/chunk_{chunk}.csv", chunk=SBC_CHUNKS),
    output:
        ranks="results/sbc/ranks.csv",
        summary="results/sbc/summary.csv",
        report="results/sbc/report.html",
    log:
        "results/sbc/logs/summarise.log",
    conda:
        "../envs/qialign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=source_hash(
            "sbc.py", "steps/sbc.py", "report/calibration.py", "report/figures.py"
        ),
    shell:
        "qialign sbc summarise --config {input.config} --chunks {input.chunks} "
        "--out-dir results/sbc > {log} 2>&1"


rule sbc:
    input:
        rules.sbc_summarise.output,

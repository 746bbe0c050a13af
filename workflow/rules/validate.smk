rule validate:
    input:
        trial_inputs,
    output:
        "results/{trial}/validation.txt",
    log:
        "results/{trial}/logs/validate.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=lambda wc: trial_config_path(wc.trial),
        code=source_hash("config.py", "data", "schemas/trial.schema.yaml"),
    shell:
        "qialign validate {params.config} --out {output} > {log} 2>&1"

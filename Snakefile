# qialign: full re-analysis of every configured trial. Logic lives in the qialign package.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/analyse.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/sbc.smk"  # `snakemake sbc`: calibration (not in all: expensive)
include: "workflow/rules/synthesis.smk"  # synthesis across trials, when config has synthesis:


rule all:
    default_target: True
    input:
        expand("results/{trial}/estimates.csv", trial=TRIALS),
        expand("reports/{trial}/report.html", trial=TRIALS),
        [f"results/{t}/{o}/loo.csv" for t in TRIALS for o in outcomes_of(t)],
        synthesis_targets(),
        [f for t in TRIALS for f in robustness_outputs(t)],

# l2o: learning to stop while learning to predict (Chen et al., ICML 2020).
# Wiring only: the rules live in workflow/rules/, the code in the l2o package.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/stage1.smk"
include: "workflow/rules/stage2.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/ablations.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True

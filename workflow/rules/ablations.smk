# Ablation variants (section `ablations` of a task): the stopping pipeline re-trained with some
# stage1 / stage2 / policy settings overridden, per seed, under results/{task}/seed{seed}/ablations/{variant}/.
# The rules are the main ones with other paths and params; a variant that leaves stage1 alone
# re-uses the main run's Stage I model.


use rule stage1 as ablation_stage1 with:
    output:
        model=f"{ABLATION_DIR}/stage1/model.pt",
    params:
        model=task_param("model"),
        stage1=ablation_section("stage1"),
    log:
        "logs/{task}/seed{seed}/ablations/{variant}/stage1.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/ablations/{variant}/stage1.tsv"


use rule stage2 as ablation_stage2 with:
    input:
        data=data_file(),
        model=ablation_stage1_model,
        code=task_sources("stage2"),
    output:
        model=f"{ABLATION_DIR}/stage2/model.pt",
    params:
        policy=ablation_section("policy"),
        stage2=ablation_section("stage2"),
    log:
        "logs/{task}/seed{seed}/ablations/{variant}/stage2.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/ablations/{variant}/stage2.tsv"


use rule evaluate as ablation_evaluate with:
    input:
        data=data_file(),
        stop=f"{ABLATION_DIR}/stage2/model.pt",
        code=task_sources("evaluate"),
    output:
        table=f"{ABLATION_DIR}/evaluation/metrics.csv",
        curves=f"{ABLATION_DIR}/evaluation/curves.json",
        showcase=f"{ABLATION_DIR}/evaluation/showcase.npz",
    log:
        "logs/{task}/seed{seed}/ablations/{variant}/evaluate.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/ablations/{variant}/evaluate.tsv"

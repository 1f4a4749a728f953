# Ablation variants (config section `ablations`): the stopping pipeline re-trained with some
# stage1 / stage2 / policy settings overridden, per seed, under results/seed{seed}/ablations/{variant}/.
# The rules are the main ones with other paths and params; a variant that leaves stage1 alone
# re-uses the main run's Stage I model.


use rule stage1 as ablation_stage1 with:
    output:
        model=f"{ABLATION_DIR}/stage1/model.pt",
    params:
        model=section("model"),
        stage1=lambda wc: ablation_section(wc.variant, "stage1"),
    log:
        "logs/seed{seed}/ablations/{variant}/stage1.log",
    benchmark:
        "benchmarks/seed{seed}/ablations/{variant}/stage1.tsv"


use rule stage2 as ablation_stage2 with:
    input:
        data="results/data/problem.npz",
        model=ablation_stage1_model,
        code=stage_sources("stage2"),
    output:
        model=f"{ABLATION_DIR}/stage2/model.pt",
    params:
        policy=lambda wc: ablation_section(wc.variant, "policy"),
        stage2=lambda wc: ablation_section(wc.variant, "stage2"),
    log:
        "logs/seed{seed}/ablations/{variant}/stage2.log",
    benchmark:
        "benchmarks/seed{seed}/ablations/{variant}/stage2.tsv"


use rule evaluate as ablation_evaluate with:
    input:
        data="results/data/problem.npz",
        lista_stop=f"{ABLATION_DIR}/stage2/model.pt",
        code=stage_sources("evaluate"),
    output:
        table=f"{ABLATION_DIR}/evaluation/metrics.csv",
        curves=f"{ABLATION_DIR}/evaluation/curves.json",
    log:
        "logs/seed{seed}/ablations/{variant}/evaluate.log",
    benchmark:
        "benchmarks/seed{seed}/ablations/{variant}/evaluate.tsv"

rule finetune:
    input:
        data=data_file(),
        model=stage_model("stage2"),
        code=task_sources("finetune"),
    output:
        model=stage_model("finetune"),
    params:
        finetune=task_param("finetune"),
    log:
        "logs/{task}/seed{seed}/finetune.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/finetune.tsv"
    threads: rule_threads("finetune")
    priority: 40
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/finetune.py"


rule aevb:
    input:
        data=data_file(),
        code=task_sources("aevb"),
    output:
        model=stage_model("aevb"),
    params:
        model=task_param("model"),
        policy=task_param("policy"),
        aevb=task_param("aevb"),
    log:
        "logs/{task}/seed{seed}/aevb.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/aevb.tsv"
    threads: rule_threads("aevb")
    priority: 40
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/aevb.py"

rule stage2:
    input:
        data=data_file(),
        model=stage_model("stage1"),
        code=task_sources("stage2"),
    output:
        model=stage_model("stage2"),
    params:
        policy=task_param("policy"),
        stage2=task_param("stage2"),
    log:
        "logs/{task}/seed{seed}/stage2.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/stage2.tsv"
    threads: rule_threads("stage2")
    priority: 60
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/stage2.py"

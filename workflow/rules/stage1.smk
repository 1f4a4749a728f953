rule stage1:
    input:
        unpack(stage1_inputs),
    output:
        model=stage_model("stage1"),
    params:
        model=task_param("model"),
        stage1=task_param("stage1"),
    log:
        "logs/{task}/seed{seed}/stage1.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/stage1.tsv"
    threads: rule_threads("stage1")
    priority: 80
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/stage1.py"

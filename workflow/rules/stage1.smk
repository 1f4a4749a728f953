rule stage1:
    input:
        unpack(stage1_inputs),
    output:
        model=stage_model("stage1"),
    params:
        model=section("model"),
        stage1=section("stage1"),
    log:
        "logs/seed{seed}/stage1.log",
    benchmark:
        "benchmarks/seed{seed}/stage1.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/stage1.py"

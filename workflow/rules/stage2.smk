rule stage2:
    input:
        data="results/data/problem.npz",
        model=stage_model("stage1"),
        code=stage_sources("stage2"),
    output:
        model=stage_model("stage2"),
    params:
        policy=section("policy"),
        stage2=section("stage2"),
    log:
        "logs/seed{seed}/stage2.log",
    benchmark:
        "benchmarks/seed{seed}/stage2.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/stage2.py"

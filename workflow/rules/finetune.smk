rule finetune:
    input:
        data="results/data/problem.npz",
        model=stage_model("stage2"),
        code=stage_sources("finetune"),
    output:
        model=stage_model("finetune"),
    params:
        finetune=section("finetune"),
    log:
        "logs/seed{seed}/finetune.log",
    benchmark:
        "benchmarks/seed{seed}/finetune.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/finetune.py"


rule aevb:
    input:
        data="results/data/problem.npz",
        code=stage_sources("aevb"),
    output:
        model=stage_model("aevb"),
    params:
        model=section("model"),
        policy=section("policy"),
        aevb=section("aevb"),
    log:
        "logs/seed{seed}/aevb.log",
    benchmark:
        "benchmarks/seed{seed}/aevb.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/aevb.py"

rule data:
    input:
        code=stage_sources("data"),
    output:
        problem="results/data/problem.npz",
        meta="results/data/problem.json",
    params:
        problem=section("problem"),
    log:
        "logs/data.log",
    benchmark:
        "benchmarks/data.tsv"
    threads: 1
    conda:
        ENV
    script:
        "../scripts/data.py"

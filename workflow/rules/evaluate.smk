rule evaluate:
    input:
        unpack(evaluation_inputs),
        data="results/data/problem.npz",
        code=stage_sources("evaluate"),
    output:
        table="results/seed{seed}/evaluation/metrics.csv",
        curves="results/seed{seed}/evaluation/curves.json",
    params:
        evaluate=section("evaluate"),
    log:
        "logs/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/seed{seed}/evaluate.tsv"
    threads: 2
    conda:
        ENV
    script:
        "../scripts/evaluate.py"

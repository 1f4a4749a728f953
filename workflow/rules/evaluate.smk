rule evaluate:
    input:
        unpack(evaluation_inputs),
        data=data_file(),
        code=task_sources("evaluate"),
    output:
        table="results/{task}/seed{seed}/evaluation/metrics.csv",
        curves="results/{task}/seed{seed}/evaluation/curves.json",
        showcase="results/{task}/seed{seed}/evaluation/showcase.npz",
    params:
        evaluate=task_param("evaluate"),
    log:
        "logs/{task}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/evaluate.tsv"
    threads: rule_threads("evaluate")
    priority: 50
    conda:
        ENV
    script:
        "../scripts/evaluate.py"

rule data:
    input:
        code=task_sources("data"),
    output:
        data=data_file(),
        meta=data_meta(),
    params:
        data=task_param("data"),
    log:
        "logs/{task}/data.log",
    benchmark:
        "benchmarks/{task}/data.tsv"
    threads: rule_threads("data")
    priority: 100
    conda:
        ENV
    script:
        "../scripts/data.py"

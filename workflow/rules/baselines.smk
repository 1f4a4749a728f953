rule classical:
    input:
        data="results/data/problem.npz",
        code=stage_sources("classical"),
    output:
        table="results/classical/metrics.csv",
        info="results/classical/classical.json",
    params:
        classical=section("classical"),
    log:
        "logs/classical.log",
    benchmark:
        "benchmarks/classical.tsv"
    threads: 2
    conda:
        ENV
    script:
        "../scripts/classical.py"


rule baseline:
    input:
        data="results/data/problem.npz",
        code=stage_sources("baseline"),
    output:
        model=stage_model("baseline"),
    params:
        model=section("model"),
        baseline=section("baseline"),
    log:
        "logs/seed{seed}/baseline.log",
    benchmark:
        "benchmarks/seed{seed}/baseline.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/baseline.py"


rule lista_matched:
    input:
        unpack(matched_inputs),
    output:
        model=stage_model("lista_matched"),
    params:
        model=section("model"),
        matched=matched_section(),
    log:
        "logs/seed{seed}/lista_matched.log",
    benchmark:
        "benchmarks/seed{seed}/lista_matched.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/lista_matched.py"

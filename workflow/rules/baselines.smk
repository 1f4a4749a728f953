# The task's non-learned baselines (ISTA/FISTA grids; BM3D and a scikit-image denoiser), the
# predictive model alone, and the matched-budget control.


rule classical:
    input:
        data=data_file(),
        code=task_sources("classical"),
    output:
        table="results/{task}/classical/metrics.csv",
        info="results/{task}/classical/classical.json",
        showcase="results/{task}/classical/showcase.npz",
    params:
        classical=task_param("classical"),
    log:
        "logs/{task}/classical.log",
    benchmark:
        "benchmarks/{task}/classical.tsv"
    threads: rule_threads("classical")
    priority: 10
    conda:
        ENV
    script:
        "../scripts/classical.py"


rule baseline:
    input:
        data=data_file(),
        code=task_sources("baseline"),
    output:
        model=stage_model("baseline"),
    params:
        model=task_param("model"),
        baseline=task_param("baseline"),
    log:
        "logs/{task}/seed{seed}/baseline.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/baseline.tsv"
    threads: rule_threads("baseline")
    priority: 80
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/baseline.py"


rule matched:
    input:
        unpack(matched_inputs),
    output:
        model=stage_model("matched"),
    params:
        model=task_param("model"),
        matched=matched_section,
    log:
        "logs/{task}/seed{seed}/matched.log",
    benchmark:
        "benchmarks/{task}/seed{seed}/matched.tsv"
    threads: rule_threads("matched")
    priority: 60
    resources:
        gpu=1,
    conda:
        ENV
    script:
        "../scripts/matched.py"

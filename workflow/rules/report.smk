rule report:
    input:
        tables=expand("results/seed{seed}/evaluation/metrics.csv", seed=SEEDS),
        curves=expand("results/seed{seed}/evaluation/curves.json", seed=SEEDS),
        ablation_tables=ablation_outputs(),
        classical="results/classical/metrics.csv",
        classical_info="results/classical/classical.json",
        problem_meta="results/data/problem.json",
        code=stage_sources("report"),
    output:
        summary=report("results/summary.csv", caption="../report/summary.rst", category="Results"),
        markdown="results/report.md",
        html=report("results/report.html", caption="../report/report.rst", category="Results"),
        plots=report(
            directory("results/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Figures",
        ),
    params:
        config=report_config(),
    log:
        "logs/report.log",
    threads: 1
    conda:
        ENV
    script:
        "../scripts/report.py"

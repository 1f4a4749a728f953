rule report:
    input:
        unpack(report_inputs),
        code=report_sources(),
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
    threads: rule_threads("report")
    conda:
        ENV
    script:
        "../scripts/report.py"

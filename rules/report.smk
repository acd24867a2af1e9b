# The HTML report: `snakemake --report results/report.html` collects every output wrapped in
# report(...) with its caption from report/.


report: "../report/workflow.rst"

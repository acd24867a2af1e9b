# The HTML report: `snakemake --report results/report.html` collects every output wrapped in
# report(...) with its caption from report/.
#
# The start page (report/workflow.rst) lists each study's verdict. Snakemake renders that page
# with the config only, so the verdicts of the criteria files present when the workflow is parsed
# (a report is made after the run) are put under the config key `report_verdicts`, which no rule
# reads. Torch-free: weightlab.verdicts reads JSON only.
from weightlab.verdicts import CRITERIA_FILE, read_verdicts

REPORT_STUDIES = {"Re-Basin": "rebasin", "Provable repair": "repair", "Geometry retrofit": "retrofit",
                  "Separability audits": "separability", "Safety-neuron drift": "drift"}
config["report_verdicts"] = read_verdicts({title: f"results/{study}/{CRITERIA_FILE}" for title, study in REPORT_STUDIES.items()})


report: "../report/workflow.rst"

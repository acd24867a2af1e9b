# weightlab: five weight-space studies, from data to figures.
# `snakemake --cores 8 all` runs every study on the default preset (config.yaml);
# `--configfile configs/smoke.yaml` or `configs/paper.yaml` merges a preset over it.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/rebasin.smk"
include: "rules/repair.smk"
include: "rules/lm.smk"
include: "rules/retrofit.smk"
include: "rules/report.smk"


rule all:
    input:
        rebasin_outputs(),
        REPAIR_OUTPUTS,
        RETROFIT_OUTPUTS,
    default_target: True

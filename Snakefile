# weightlab: five weight-space studies, from data to figures.
# `snakemake --cores 8 all` runs every study on the default preset (config.yaml);
# `snakemake --cores 2 <study>` runs one; `--configfile configs/smoke.yaml` or
# `configs/paper.yaml` merges a preset over config.yaml.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/lm.smk"
include: "rules/rebasin.smk"
include: "rules/rebasin_width.smk"
include: "rules/repair.smk"
include: "rules/retrofit.smk"
include: "rules/separability.smk"
include: "rules/drift.smk"
include: "rules/report.smk"


rule all:
    input:
        rules.rebasin.input,
        rules.repair.input,
        rules.retrofit.input,
        rules.separability.input,
        rules.drift.input,
    default_target: True


include: "rules/library.smk"  # last: every script rule's `library` param (the digest of its library code)

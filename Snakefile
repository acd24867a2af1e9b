# weightlab: five weight-space studies, from data to figures.
# `snakemake --cores 8 all` runs every study on the default preset (config.yaml);
# `snakemake --cores 2 <study>` runs one; `--configfile configs/smoke.yaml` or
# `configs/paper.yaml` merges a preset over config.yaml.
import os

from snakemake.utils import min_version

from weightlab.sourcecode import library_digest

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


# Snakemake re-runs a script rule when its script changes, not when the library code the script
# runs does. Every script rule gets a `library` param, the digest of the weightlab modules its
# script imports (weightlab.sourcecode): change one and the rules that run it re-run, nothing else.
for _rule in workflow.rules:
    if _rule.script:
        _rule.set_params(library=library_digest(os.path.join(str(_rule.basedir), _rule.script)))

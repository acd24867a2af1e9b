"""Every prompt set of the drift study from packaged text (AdvBench, HarmBench, refusal.csv, the
Jargon File, news), split with the seed so no prompt or utility document is in two sets."""
from weightlab.drift.data import DataSizes, prepare_data
from weightlab.io import write_json
from weightlab.lm import LM_PACKAGES
from weightlab.provenance import provenance
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params, settings = step.params, step.params.settings
    data = prepare_data(DataSizes.from_settings(settings.get("data", {})), params.seed, params.jargon_file)
    step.log.info("sets: %s", ", ".join(f"{name} {n}" for name, n in data["sizes"].items()))
    write_json(step.output[0], {**data, "provenance": provenance(settings, params.seed, (*LM_PACKAGES, "pyrit", "garak"))})

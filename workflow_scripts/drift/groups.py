"""The neuron groups (snip_top, set_diff, utility, random, random_matched) from the SNIP scores:
one file of ids per group, and their counts, overlaps and spread over layers and module types."""
from weightlab.drift.design import GROUPS
from weightlab.drift.groups import build_groups, group_to_json, module_sizes
from weightlab.drift.report import group_summary
from weightlab.drift.settings import GroupSettings
from weightlab.drift.snip import read_scores
from weightlab.io import write_json
from weightlab.provenance import provenance
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params, s = step.params, step.params.settings
    safety, utility = read_scores(step.input.safety), read_scores(step.input.utility)
    g = GroupSettings.from_settings(s)
    groups = build_groups(safety, utility, g.snip_top_k, g.set_diff_p, g.set_diff_q, g.utility_top_k, g.random_k, params.seed)
    for name in GROUPS:
        write_json(getattr(step.output, name), group_to_json(groups[name], name))
    summary = group_summary(groups, module_sizes(safety))
    step.log.info("groups: %s of %d neurons; overlaps %s", summary["counts"], summary["total_neurons"], summary["overlaps"])
    write_json(step.output.summary, {**summary, "provenance": provenance(s, params.seed)})

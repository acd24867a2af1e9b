"""Experiment B, step 1: IOI prompts and the name movers and random control heads of the model in use."""
from weightlab.io import write_json
from weightlab.lm import LM_PACKAGES
from weightlab.lm.backbone import load_backbone, load_bridge
from weightlab.provenance import provenance
from weightlab.script import rule_step
from weightlab.separability.ioi import find_heads
from weightlab.separability.prompts import make_ioi_dataset

with rule_step(snakemake) as step:
    settings, seed = step.params.settings, step.params.seed
    step.seed()
    backbone = load_backbone(step.input.backbone, step.device)
    bridge = load_bridge(backbone)
    dataset = make_ioi_dataset(backbone.tokenizer, int(settings["n_examples"]), seed, bool(settings["prepend_bos"]))
    heads = find_heads(bridge, dataset, settings, seed)
    step.log.info("%s: %d IOI prompts of %d tokens, clean logit diff %.3f; name movers %s; random heads %s",
                  backbone.name, len(dataset), dataset.tokens.shape[1], heads["clean_logit_diff"],
                  ", ".join(f"{h['name']} ({h['attribution']:.3f})" for h in heads["name_movers"]),
                  ", ".join(f"{h['name']} ({h['attribution']:.4f})" for h in heads["random_heads"]))
    write_json(step.output.heads, {"model": backbone.name, "seed": seed, **heads,
                                   "provenance": provenance(settings, seed, LM_PACKAGES)})

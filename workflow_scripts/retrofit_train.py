"""Continue training the backbone with one method (standard, gram, geometry) and record its trajectory."""
from weightlab.io import read_json, write_json
from weightlab.lm import LM_PACKAGES, hub_environment, load_backbone
from weightlab.provenance import provenance
from weightlab.retrofit import RetrofitConfig, retrofit, retrofit_data
from weightlab.runtime import configure, resolve_device, seed_everything
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    params, settings, run = snakemake.params, snakemake.params.settings, snakemake.wildcards.run
    hub_environment(params.offline)
    configure(snakemake.threads)
    generator = seed_everything(params.seed)  # one seed for every method: same data order
    device = resolve_device(params.device)
    backbone = load_backbone(snakemake.input.backbone, device)
    train, validation, data = retrofit_data(backbone.tokenizer, read_json(snakemake.input.text), settings["corpus"],
                                            settings["seq_len"], settings["eval_sequences"], settings["max_docs"])
    cfg = RetrofitConfig.from_settings(params.method, settings)
    log.info("%s (%s) on %s: %d training blocks of %d tokens, device %s", run, cfg, data["corpus"], len(train), data["seq_len"], device)
    baseline = read_json(snakemake.input.baseline)["initial"]
    result = retrofit(backbone.model, train, validation, cfg, device, generator, initial=baseline, desc=run)
    log.info("%s: conditioning %.1f -> %.1f, perplexity %.2f -> %.2f, %.1f s per 100 steps", run,
             result["initial"]["conditioning"], result["final"]["conditioning"], result["initial"]["perplexity"],
             result["final"]["perplexity"], result["timing"]["seconds_per_100_steps"])
    write_json(snakemake.output[0], {
        "run": run, **result, "model": backbone.name, "data": data,
        "provenance": provenance(settings, params.seed, LM_PACKAGES),
    })

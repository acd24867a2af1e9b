"""Continue training the backbone with one method (standard, gram, geometry) and record its trajectory."""
from weightlab.config import settings_dataclass
from weightlab.io import read_json, write_json
from weightlab.lm import LM_PACKAGES
from weightlab.lm.backbone import load_backbone
from weightlab.lm.throughput import matmul_peak, throughput
from weightlab.provenance import provenance
from weightlab.retrofit.data import retrofit_data
from weightlab.retrofit.training import RetrofitConfig, retrofit
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params, run = step.params, step.wildcards.run
    cfg = settings_dataclass(RetrofitConfig, {"method": params.method, **params.train}, "retrofit.train")
    generator = step.seed()  # one seed for every method: same data order
    device = step.device
    backbone = load_backbone(step.input.backbone, device)
    train, validation, data = retrofit_data(backbone.tokenizer, read_json(step.input.text), params.data["corpus"],
                                            params.data["seq_len"], params.data["eval_sequences"], cfg.max_docs)
    step.log.info("%s (%s) on %s: %d training blocks of %d tokens, device %s",
                  run, cfg, data["corpus"], len(train), data["seq_len"], device)
    baseline = read_json(step.input.baseline)["initial"]
    result = retrofit(backbone.model, train, validation, cfg, device, generator, initial=baseline, desc=run)
    step.log.info("%s: conditioning %.1f -> %.1f, perplexity %.2f -> %.2f, %.1f s per 100 steps", run,
                  result["initial"]["conditioning"], result["final"]["conditioning"], result["initial"]["perplexity"],
                  result["final"]["perplexity"], result["timing"]["seconds_per_100_steps"])
    rate = throughput(result["timing"]["train_flops"], result["timing"]["train_seconds"], matmul_peak())
    result["timing"]["throughput"] = rate.as_dict()
    step.log.info("%s training steps: %s", run, rate.describe())
    write_json(step.output[0], {
        "run": run, **result, "model": backbone.name, "data": data,
        "provenance": provenance({"data": params.data, "train": params.train}, params.seed, LM_PACKAGES),
    })

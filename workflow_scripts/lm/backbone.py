"""Convert the packaged model once to a local folder (safetensors + tokenizer), or check a hub model."""
from weightlab.lm import LM_PACKAGES
from weightlab.lm.backbone import prepare_backbone
from weightlab.provenance import provenance
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params = step.params
    step.use_threads()
    block = provenance({"model": params.name, "offline": params.offline}, None, LM_PACKAGES)
    manifest = prepare_backbone(params.name, step.output[0], block)
    step.log.info("%s: %s, %d parameters, source %s", params.name, manifest["model_type"], manifest["parameters"], manifest["source"])
    step.log.info("next tokens after %r: %s", manifest["sanity_check"]["prompt"], manifest["sanity_check"]["top_next_tokens"])

"""Convert the packaged model once to a local folder (safetensors + tokenizer), or check a hub model."""
from weightlab.lm import LM_PACKAGES, hub_environment, prepare_backbone
from weightlab.provenance import provenance
from weightlab.runtime import configure
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    params = snakemake.params
    hub_environment(params.offline)
    configure(snakemake.threads)
    block = provenance({"model": params.name, "offline": params.offline}, None, LM_PACKAGES)
    manifest = prepare_backbone(params.name, snakemake.output[0], block)
    log.info("%s: %s, %d parameters, source %s", params.name, manifest["model_type"], manifest["parameters"], manifest["source"])
    log.info("next tokens after %r: %s", manifest["sanity_check"]["prompt"], manifest["sanity_check"]["top_next_tokens"])

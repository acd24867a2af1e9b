# What every study shares: config validation and a local core count that fits the machine.
# Study names, wildcards and outputs live in rules/<study>.smk; the names they need while
# parsing come from torch-free library modules (weightlab.<study>.design, weightlab.lm).
import os

from snakemake.utils import validate

from weightlab.config import check_config, local_core_limit

# One readable line per problem first (and no traceback), then Snakemake's validation, which fills defaults.
try:
    check_config(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml"))
except ValueError as _error:
    raise SystemExit(str(_error)) from None
validate(config, schema="../schemas/config.schema.yaml")

# Snakemake takes --cores at its word: `--cores 8` on a 2-core machine would run four
# torch jobs at once, each several times slower. Local runs use at most the CPUs this process
# may use; a cluster (or a larger machine) keeps the cores it is given.
_cores = local_core_limit(workflow.global_resources["_cores"].value, workflow.local_exec and not workflow.remote_exec)
if _cores is not None:
    workflow.register_resource("_cores", _cores)

# OpenMP threads that wait for work sleep instead of spinning (libgomp's default spins first).
# Jobs inherit it. With another job or program on the cores a spinning thread burns the CPU the
# other needs: a 2-thread Re-Basin training step cost 300-700 ms of CPU spinning and 120-130 ms
# passive, with the same weights bit for bit (README, cost). Set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

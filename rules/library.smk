# Included last, after every rule. Snakemake re-runs a script rule when its script changes, not
# when the library code the script runs does. Every script rule gets a `library` param, the
# digest of the weightlab modules its script imports (weightlab.sourcecode): change one and the
# rules that run it re-run, nothing else.
import os

from weightlab.sourcecode import library_digest

for _rule in workflow.rules:
    if _rule.script:
        _rule.set_params(library=library_digest(os.path.join(str(_rule.basedir), _rule.script)))

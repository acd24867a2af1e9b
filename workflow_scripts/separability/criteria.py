"""results/separability/success_criteria.json (every original criterion against the measured values,
the preconditions, the verdict, Ψ per condition) and criteria.json (the records and the verdict)."""
from weightlab.io import read_json, write_json
from weightlab.provenance import provenance
from weightlab.script import rule_step
from weightlab.separability.auditlog import validate_audit_log
from weightlab.separability.criteria import criteria_table, evaluate

with rule_step(snakemake) as step:
    logs = []
    for path in step.input.logs:
        log = read_json(path)
        validate_audit_log(log, where=path)
        logs.append(log)
    result = evaluate(logs, step.params.criteria)
    step.log.info("success criteria:\n%s", criteria_table(result))
    block = provenance(step.params.separability, step.params.seed)
    write_json(step.output.criteria, {**result, "provenance": block})
    write_json(step.output.records, {k: v for k, v in result.items() if k not in ("aggregate", "seeds")} | {"provenance": block})

#!/usr/bin/env bash
# Mutation testing of one study's science modules, or of the shared ones, with mutmut.
#
#   benchmarks/mutation.sh <shared|rebasin|repair|retrofit|separability|drift> [--recheck]
#
# mutmut (pinned in requirements-dev.txt: pip install -r requirements-dev.txt) makes small
# changes ("mutants") to every function of the target's modules -- a + for a -, a < for a <=,
# a constant changed, an argument dropped -- and runs the unit tests that cover each function
# (`-m "not workflow"`, `-x`) against each mutant. A mutant the tests fail on is killed; one
# they pass on survived: either the change is equivalent (it cannot change any result) or the
# tests are blind to it. Survivors are triaged in benchmarks/mutation_survivors.md.
#
# It works on a snapshot of the working tree (tracked and untracked, not ignored files) in
# $MUTATION_WORKDIR/<target> (default /tmp/weightlab-mutation), so the repository is never
# touched, and ends with the share of mutants killed per module (benchmarks/mutation_scores.py),
# also written to $MUTATION_WORKDIR/<target>/scores.md. It runs niced, single-threaded torch,
# with $MUTATION_CHILDREN parallel mutants (default 4: niced, they mostly wait for a core).
# By hand or in a benchmark, never in CI.
# A mutant's time limit is 15 x its tests' time + $MUTATION_TIMEOUT s (default 60).
# `mutmut show <name>` / `mutmut results` inside the snapshot explain any mutant.
#
# --recheck: after adding tests for survivors, copy the working tree's tests into the existing
# snapshot and re-run only the mutants not killed (mutmut collects the new tests' coverage; the
# mutants killed before keep that verdict, also when a new test file makes mutmut reset them);
# the library code must not have changed since the full run. After an interrupted run it
# rechecks the mutants run so far; those not reached stay "not checked".
# --resume: go on with a full run that was interrupted (killed, or the machine went down), in
# its snapshot and with its tests: mutants that already have a result keep it. The run's time
# is the sum of its parts (seconds.parts in the snapshot).
set -euo pipefail

target=${1:?usage: benchmarks/mutation.sh <shared|rebasin|repair|retrofit|separability|drift> [--recheck|--resume]}
mode=${2:-full}
children=${MUTATION_CHILDREN:-4}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${MUTATION_WORKDIR:-/tmp/weightlab-mutation}/$target

# Science modules per target (figures and key tables are presentation, left out) and the unit
# tests that cover them; mutmut runs, per mutant, only the tests that call the mutated function.
case $target in
  shared)
    modules=(src/weightlab/stats.py src/weightlab/rebasin/permutations.py src/weightlab/vision/training.py)
    tests=(tests/test_foundation.py tests/test_permutations.py tests/test_shared_science.py tests/test_rebasin.py tests/test_rebasin_science.py) ;;
  rebasin)
    modules=(src/weightlab/rebasin/barriers.py src/weightlab/rebasin/design.py src/weightlab/rebasin/environments.py
             src/weightlab/rebasin/models.py src/weightlab/rebasin/paths.py src/weightlab/rebasin/report.py
             src/weightlab/rebasin/spurious.py src/weightlab/rebasin/width.py)
    tests=(tests/test_rebasin.py tests/test_rebasin_science.py) ;;
  repair)
    modules=(src/weightlab/repair/base.py src/weightlab/repair/core.py src/weightlab/repair/criteria.py src/weightlab/repair/editsets.py
             src/weightlab/repair/experiment.py src/weightlab/repair/lp.py src/weightlab/repair/models.py src/weightlab/repair/solvers.py)
    tests=(tests/test_repair.py tests/test_repair_science.py) ;;
  retrofit)
    modules=(src/weightlab/retrofit/criteria.py src/weightlab/retrofit/data.py src/weightlab/retrofit/design.py src/weightlab/retrofit/gram.py
             src/weightlab/retrofit/summary.py src/weightlab/retrofit/training.py)
    tests=(tests/test_retrofit.py tests/test_retrofit_science.py) ;;
  separability)
    modules=(src/weightlab/separability/ablation.py src/weightlab/separability/auditlog.py src/weightlab/separability/clamps.py
             src/weightlab/separability/constraint.py
             src/weightlab/separability/criteria.py src/weightlab/separability/design.py src/weightlab/separability/freeze.py
             src/weightlab/separability/grokking.py src/weightlab/separability/ioi.py src/weightlab/separability/observables.py src/weightlab/separability/prompts.py
             src/weightlab/separability/selfrepair.py src/weightlab/separability/superposition.py src/weightlab/separability/task.py
             src/weightlab/separability/toy.py)
    tests=(tests/test_separability.py tests/test_separability_clamps.py tests/test_separability_constraint.py
           tests/test_separability_criteria.py tests/test_separability_grokking.py tests/test_separability_ioi.py
           tests/test_separability_privileged.py tests/test_separability_selfrepair.py tests/test_separability_superposition.py
           tests/test_separability_transition.py tests/test_separability_prompts.py tests/test_separability_criteria_cd.py) ;;
  drift)
    modules=(src/weightlab/drift/analysis.py src/weightlab/drift/criteria.py src/weightlab/drift/data.py src/weightlab/drift/design.py
             src/weightlab/drift/drift.py src/weightlab/drift/effects.py src/weightlab/drift/groups.py src/weightlab/drift/lora.py
             src/weightlab/drift/power.py src/weightlab/drift/refusal.py src/weightlab/drift/report.py src/weightlab/drift/snip.py
             src/weightlab/drift/stats.py src/weightlab/drift/weights.py)
    tests=(tests/test_drift.py tests/test_drift_effects.py tests/test_drift_judge.py tests/test_drift_population.py
           tests/test_drift_science.py tests/test_drift_units.py tests/test_drift_weights.py) ;;
  *) echo "unknown target '$target'; choose shared, rebasin, repair, retrofit, separability or drift" >&2; exit 2 ;;
esac
for path in "${modules[@]}" "${tests[@]}"; do
  [[ -e $root/$path ]] || { echo "$path is not in this checkout: update the lists in $0" >&2; exit 2; }
done

# mutmut's configuration: the lists above (a recheck writes it again, for test files added since)
write_setup_cfg() {
  {
    echo "[mutmut]"
    echo "source_paths = src"
    echo "only_mutate ="; printf '    %s\n' "${modules[@]}"
    echo "pytest_add_cli_args_test_selection ="; printf '    %s\n' "${tests[@]}"
    echo "pytest_add_cli_args ="; printf '    %s\n' -m "not workflow" -p no:cacheprovider -p mutation_warmup
    echo "also_copy ="; printf '    %s\n' config.yaml configs schemas envs rules workflow_scripts report profiles Snakefile requirements.txt
    echo "process_isolation = forkserver"  # torch is not fork-safe once its thread pools run
    # a mutant's time limit is 15 x its tests' time + this constant: on a loaded 2-core machine a
    # forked pytest run of a 0.01 s test can take several seconds, and mutmut's default constant
    # (1 s) then reports "timeout" for mutants that only waited for a core
    echo "timeout_constant = ${MUTATION_TIMEOUT:-60}"
    # the text of an error (`raise XError(...)` statements) is a message, not science; the
    # conditions that raise are still mutated
    echo "do_not_mutate_patterns ="; printf '    %s\n' '^\s*raise \w+\('
  } > "$work/setup.cfg"
}

if [[ $mode == --recheck || $mode == --resume ]]; then
  if [[ $mode == --recheck ]]; then
    # after an interrupted run too: the mutants it has not reached stay "not checked"
    [[ -f $work/seconds.parts ]] || { echo "no run in $work to recheck" >&2; exit 2; }
  else
    [[ -d $work/mutants ]] || { echo "no run in $work to resume" >&2; exit 2; }
  fi
  for path in "${modules[@]}"; do
    cmp -s "$root/$path" "$work/$path" || { echo "$path changed since the full run: run it again without $mode" >&2; exit 2; }
  done
fi

# benchmarks/mutation_plugin/mutation_warmup.py (a pytest plugin, its docstring says why): the
# fork server imports, once, the modules the tests import when they run, then freezes its heap
export PYTHONPATH=$root/benchmarks/mutation_plugin MUTATION_PRELOAD=$work/preload.txt
# the packaged LM, converted once per run (below), for the tests that load it (conftest.lm_backbone_folder)
use_backbone() { if [[ -s $work/backbone/backbone.json ]]; then export WEIGHTLAB_TEST_BACKBONE=$work/backbone; fi; }

# the time of a full run, also when it is interrupted (then --resume adds the rest)
timed_run() {
  local log=$1 started commit
  started=$(date +%s)
  commit=$(git -C "$root" rev-parse --short HEAD)  # the snapshot's (uncommitted changes too)
  trap 'echo $(( $(date +%s) - started )) >> seconds.parts' EXIT
  if [[ ! -s backbone/backbone.json ]]; then  # the packaged LM converted once, not once per mutant (tests/conftest.py)
    PYTHONPATH=$work/src nice -n 10 python -c "from weightlab.lm.backbone import prepare_backbone; prepare_backbone('SmolLM2-135M-Instruct', '$work/backbone')" \
      > backbone.log 2>&1 || { tail -20 backbone.log >&2; exit 1; }
  fi
  use_backbone
  if [[ ! -s preload.txt ]]; then  # one run of the tests, recording what they import
    MUTATION_PRELOAD_RECORD=$work/preload.txt PYTHONPATH=$work/src:$PYTHONPATH nice -n 10 python -m pytest -q \
      -m "not workflow" -p no:cacheprovider -p mutation_warmup "${tests[@]}" > preload.log 2>&1 \
      || { tail -20 preload.log >&2; echo "the unit tests fail on the unmutated code: see $work/preload.log" >&2; exit 1; }
  fi
  nice -n 10 python -m mutmut run --max-children "$children" >> "$log" 2>&1 || { tail -40 "$log" >&2; exit 1; }
  trap - EXIT
  echo $(( $(date +%s) - started )) >> seconds.parts
  awk '{ s += $1 } END { print s }' seconds.parts > seconds
  python -m mutmut results --all true > results.txt
  python "$root/benchmarks/mutation_scores.py" results.txt --target "$target" --seconds "$(cat seconds)" \
    --commit "$commit" | tee scores.md
}

if [[ $mode == --resume ]]; then
  cd "$work"
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
  timed_run run.log
  exit 0
fi

if [[ $mode == --recheck ]]; then
  tests_commit=$(git -C "$root" rev-parse --short HEAD)  # the tests copied now (uncommitted changes too)
  rm -rf "$work/tests" && (cd "$root" && git ls-files -co --exclude-standard -z tests | tar --null -T - -cf -) | tar -xf - -C "$work"
  write_setup_cfg  # the test files of now, new ones too (mutmut copies it into mutants/)
  cd "$work"
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
  use_backbone
  # the verdicts so far (the last run's or recheck's, merged): mutmut resets them all when the test files change
  if [[ -s results.txt ]]; then cp results.txt results.before.txt; else python -m mutmut results --all true > results.before.txt; fi
  mapfile -t again < <(sed -n 's/^ *\([^:]*__mutmut_[0-9]*\): \(survived\|no tests\|timeout\|suspicious\|segfault\)$/\1/p' results.before.txt)
  started=$(date +%s)
  if (( ${#again[@]} )); then
    nice -n 10 python -m mutmut run --max-children "$children" "${again[@]}" > recheck.log 2>&1 || { tail -40 recheck.log >&2; exit 1; }
  fi
  elapsed=$(( $(date +%s) - started ))
  python -m mutmut results --all true > results.txt
  full=$(awk '{ s += $1 } END { print s }' seconds.parts)
  echo "rechecked ${#again[@]} mutants in $elapsed s (the full run: $full s)"
  python "$root/benchmarks/mutation_scores.py" results.txt --earlier results.before.txt --target "$target" \
    --seconds "$full" --commit "$tests_commit (tests)" | tee scores.md
  exit 0
fi

rm -rf "$work" && mkdir -p "$work"
(cd "$root" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$work"
write_setup_cfg
sed -i '/^\[tool\.mutmut\]/,/^\[/d' "$work/pyproject.toml"  # setup.cfg is the one configuration read

cd "$work"
# PYTHONPATH holds only the plugin: mutmut puts its mutated copy, mutants/src, first on the path
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
timed_run run.log

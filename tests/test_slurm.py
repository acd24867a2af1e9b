"""SLURM, for real: a single-node cluster (Debian's slurm-wlm and munge) is brought up on this
machine, the smoke preset of one image study (repair) and one LM study (retrofit) runs through
`--profile profiles/slurm`, every job is checked in the scheduler's own records (partition, GPU
request, CPUs, memory, time limit, exit state) and every JSON/CSV result is compared with a
local run's. A second test makes a job fail once and checks the profile's retry resubmits it.

The cluster: this host as controller and node (its CPUs and memory as `slurmd -C` reports them),
a fake GPU (`gres.conf` with File=/dev/null) and two partitions, `cpu` (default) and `gpu`, as
profiles/slurm/partitions.yaml names them. The job-step plugin reads /etc/slurm/slurm.conf
whatever SLURM_CONF says, so the fixture writes its configuration there (an existing one is
backed up and restored) and keeps everything else (munge key and socket, state, logs) in a
temporary folder. No accounting database: job states come from squeue, which keeps finished
jobs for MinJobAge seconds. Where SLURM cannot start (not root, packages missing, daemons that
do not come up, a trivial job that does not run) the tests are skipped with the reason;
`./setup.sh` installs the packages, so CI runs them."""

from __future__ import annotations

import collections
import re
import shutil
import textwrap
import time
from pathlib import Path

import pytest
from slurm_harness import (
    STUDIES,
    differences,
    gpu_partition_names,
    megabytes,
    minutes,
    run_with_profile,
    single_node_cluster,
    slurm_profile,
    submitted_jobs,
)

from conftest import ROOT, copy_workflow, planned_jobs

pytestmark = [pytest.mark.workflow, pytest.mark.slurm]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM on this machine for the module's tests (slurm_harness.single_node_cluster)."""
    yield from single_node_cluster(tmp_path_factory)


# ---------------------------------------------------------------- the tests


def test_repair_and_retrofit_run_through_sbatch_with_gpu_requests_and_match_a_local_run(slurm_cluster, smoke_study, tmp_path):
    local = {study: smoke_study(study) for study in STUDIES}
    workdir = copy_workflow(tmp_path / "workflow")
    started = time.monotonic()
    result, log = run_with_profile(workdir, slurm_cluster, *STUDIES, configfiles=("configs/smoke.yaml",))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"snakemake --profile profiles/slurm failed ({result.returncode}):\n{log[-8000:]}\n{slurm_cluster.logs()}"
    run_id = re.search(r"^SLURM run ID: (\S+)$", log, re.MULTILINE).group(1)

    # Every job but the local target rules went through sbatch, and the plan was run in full.
    jobs = submitted_jobs(log)
    remote = [job for job in jobs if not job["local"]]
    assert remote, f"no job was scheduled:\n{log[-4000:]}"
    assert all(job["slurm_id"] for job in remote), [job["rule"] for job in remote if not job["slurm_id"]]
    assert not any(job["slurm_id"] for job in jobs if job["local"])
    planned = planned_jobs(log.split("Select jobs to execute")[0])
    assert collections.Counter(job["rule"] for job in jobs) == collections.Counter(planned), (planned, [job["rule"] for job in jobs])

    # The scheduler saw each job as the plugin asked for it: partition by GPU need, a GPU for every
    # gpu=1 rule and none for the others, the rule's threads as CPUs, its memory and time limit.
    ctld_log = slurm_cluster.ctld_log.read_text()
    gpu_partitions, seen = gpu_partition_names(), []
    for job in remote:
        record, slurm_id, wants_gpu = slurm_cluster.job(job["slurm_id"]), job["slurm_id"], job["resources"].get("gpu") == "1"
        where = f"{job['rule']} (SLURM job {slurm_id})"
        assert record, f"{where}: scontrol does not know the job"
        assert f"_slurm_rpc_submit_batch_job: JobId={slurm_id} " in ctld_log, f"{where}: no sbatch submission in the slurmctld log"
        node, partition = slurm_cluster.node, record["Partition"]
        # the main scheduler or the backfill one (which logs "sched/backfill: _start_job: Started ...")
        started = (rf"sched: Allocate JobId={slurm_id} NodeList={node} .*Partition={partition}"
                   rf"|backfill: (?:_start_job: )?Started JobId={slurm_id} in {partition} on {node}")
        assert re.search(started, ctld_log), f"{where}: the slurmctld log does not show it started in {partition} on {node}"
        assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), (where, record)
        comment = record["Comment"]
        assert record["JobName"] == run_id and (comment == f"rule_{job['rule']}" or comment.startswith(f"rule_{job['rule']}_wildcards_")), (where, record)
        assert Path(record["WorkDir"]).resolve() == workdir.resolve(), (where, record["WorkDir"])
        assert (record["Partition"] in gpu_partitions) == wants_gpu, (where, record["Partition"])
        assert ("gres:gpu:1" in record.get("TresPerJob", "")) == wants_gpu, (where, record.get("TresPerJob"))
        assert int(record["NumCPUs"]) == job["threads"], (where, record["NumCPUs"], job["threads"])
        assert megabytes(record["MinMemoryNode"]) == int(job["resources"]["mem_mb"]), (where, record["MinMemoryNode"])
        assert minutes(record["TimeLimit"]) == int(job["resources"]["runtime"]), (where, record["TimeLimit"])
        seen.append(f"{job['rule']}: {record['Partition']} {record.get('TresPerJob', '-')} cpus={record['NumCPUs']} "
                    f"mem={record['MinMemoryNode']} time={record['TimeLimit']}")
    assert any(job["resources"].get("gpu") == "1" for job in remote), "no GPU rule ran: nothing checked the GPU requests"

    problems = [f"{study}: {problem}" for study in STUDIES for problem in differences(local[study], workdir)]
    assert not problems, "\n".join(problems)
    print(f"\nSLURM run of {' and '.join(STUDIES)}: {elapsed:.0f} s, {len(remote)} sbatch jobs\n" + "\n".join(seen))


def test_a_job_that_fails_once_is_resubmitted_by_the_profile_retry_with_more_runtime(slurm_cluster, tmp_path):
    workdir = tmp_path / "flaky"
    shutil.copytree(ROOT / "profiles" / "slurm", workdir / "profiles" / "slurm")
    (workdir / "Snakefile").write_text(textwrap.dedent("""\
        rule flaky:
            output:
                "done.txt",
            log:
                "flaky.log",
            shell:
                "if [ ! -e first-attempt ]; then touch first-attempt; echo failing once >&2; exit 3; fi; echo ok > {output}"
        """))
    result, log = run_with_profile(workdir, slurm_cluster, "done.txt")
    assert result.returncode == 0, f"the retry did not rescue the job:\n{log[-6000:]}\n{slurm_cluster.logs()}"
    assert f"Provided remote nodes: {slurm_profile()['jobs']}" in log, "the profile's `jobs` did not reach the executor"
    attempts = [job for job in submitted_jobs(log) if job["rule"] == "flaky"]
    records = [slurm_cluster.job(job["slurm_id"]) for job in attempts]
    retries = slurm_profile()["retries"]
    assert retries >= 1 and len(records) == 2, (retries, attempts)
    assert records[0]["JobState"] == "FAILED" and records[0]["ExitCode"] != "0:0", records[0]
    assert (records[1]["JobState"], records[1]["ExitCode"]) == ("COMPLETED", "0:0"), records[1]
    runtime = str(slurm_profile()["default-resources"]["runtime"])
    expected = [eval(runtime, {"attempt": attempt}) for attempt in (1, 2)]  # noqa: S307 - the profile's own expression
    assert [minutes(r["TimeLimit"]) for r in records] == expected, ([r["TimeLimit"] for r in records], runtime)
    assert (workdir / "done.txt").read_text() == "ok\n"

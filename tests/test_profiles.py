"""The SLURM profile sends every GPU rule to a GPU partition with a GPU request, through the
executor plugin's own partition selection and GRES code, on the jobs a paper-scale run plans."""

import logging
import re

import pytest
import yaml

from conftest import ROOT, snakemake

pytestmark = pytest.mark.workflow

slurm = pytest.importorskip("snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm is not installed")
from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file  # noqa: E402
from snakemake_executor_plugin_slurm.utils import set_gres_string  # noqa: E402


class Resources(dict):
    """A job's resources as the plugin reads them: .get(key) and attribute access."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(key) from err


class PlannedJob:
    def __init__(self, rule: str, threads: int, resources: dict):
        self.name, self.threads, self.resources = rule, threads, Resources(resources)

    def is_group(self) -> bool:
        return False


def _value(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def planned_slurm_jobs(output: str) -> list[PlannedJob]:
    """Every job of a dry run with its threads and resources, as Snakemake resolved them."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        resources = re.search(r"^\s+resources: (.+)$", block, re.MULTILINE)
        if not rule or not resources or rule.group(1) == "all":
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.MULTILINE)
        values = dict(item.split("=", 1) for item in resources.group(1).split(", "))
        jobs.append(PlannedJob(rule.group(1), int(threads.group(1)) if threads else 1, {k: _value(v) for k, v in values.items()}))
    return jobs


@pytest.fixture(scope="module")
def paper_jobs(tmp_path_factory) -> list[PlannedJob]:
    from conftest import copy_workflow

    workdir = copy_workflow(tmp_path_factory.mktemp("slurm") / "workflow")
    result = snakemake(workdir, "-n", "--profile", "profiles/slurm", "all", configfiles=("configs/paper.yaml",))
    return planned_slurm_jobs(result.stdout)


def test_the_profile_selects_partitions_from_its_partition_file():
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert (ROOT / profile["slurm-partition-config"]).is_file()
    assert "slurm_partition" not in profile.get("default-resources", {})
    assert not any("slurm_partition" in r for r in profile.get("set-resources", {}).values()), "partitions come from resources, not rule names"


def test_every_gpu_rule_goes_to_a_gpu_partition_with_a_gpu_request(paper_jobs):
    partitions = read_partition_file(ROOT / "profiles/slurm/partitions.yaml")
    gpu_partitions = {p.name for p in partitions if p.limits.max_gpu > 0}
    logger = logging.getLogger("test")
    gpu_jobs = [job for job in paper_jobs if job.resources.get("gpu")]
    assert {"rebasin_train", "repair_train", "retrofit_train"} <= {job.name for job in gpu_jobs}
    for job in paper_jobs:
        partition, gres = get_best_partition(partitions, job, logger), set_gres_string(job)
        if job.resources.get("gpu"):
            assert partition in gpu_partitions and "--gpus=1" in gres, (job.name, partition, gres)
        else:
            assert partition not in gpu_partitions and "gpu" not in gres, (job.name, partition, gres)


def test_the_slurm_profile_gives_every_job_its_default_runtime_and_memory():
    """Snakemake reads the workflow profile (profiles/default) on top of --profile, and its keys
    win: a default-resources block there would silently drop profiles/slurm's runtime (SLURM then
    runs the job with no time limit). A rule that declares no resources must get the slurm defaults."""
    result = snakemake(ROOT, "-n", "--forceall", "repair_train", "--profile", "profiles/slurm")
    resources = [line for line in result.stdout.splitlines() if line.strip().startswith("resources:")]
    defaults = slurm_profile_defaults()
    assert resources and all(f"runtime={eval(str(defaults['runtime']), {'attempt': 1})}" in line for line in resources), resources
    assert all("mem_mb=" in line for line in resources), resources


def slurm_profile_defaults() -> dict:
    return yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())["default-resources"]

"""The SLURM test harness of tests/test_slurm.py: a single-node cluster on this machine
(the `slurm_cluster` fixture), the profile's arguments fitted to the node, a run through
`--profile profiles/slurm`, the jobs it submitted, and a comparison of results with a local run.
See test_slurm.py for what the cluster is and when the tests are skipped."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

SLURM_ETC = Path("/etc/slurm")
CONFIG_FILES = ("slurm.conf", "gres.conf")
BACKUP_SUFFIX = ".weightlab-test-backup"
LOCK_FILE = Path(tempfile.gettempdir()) / "weightlab-slurm-test.lock"
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
# program -> Debian package that ships it
PROGRAMS = {
    "munged": "munge", "munge": "munge", "unmunge": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd",
    "sbatch": "slurm-client", "srun": "slurm-client", "squeue": "slurm-client", "scontrol": "slurm-client",
    "sinfo": "slurm-client", "scancel": "slurm-client",
}
STUDIES = ("repair", "retrofit")
MIN_JOB_AGE = 3600  # seconds finished jobs stay visible to squeue/scontrol: longer than any run here
STATUS_CHECK_SECONDS = 2  # first status check after 2 s (the plugin's default, 40 s, suits real clusters)
RUN_TIMEOUT = 3600
LOCAL_CORES = 2  # conftest's local runs use --cores 2: the same thread counts make the same numbers
CONFIG_MARKER = "# Written by weightlab's tests/test_slurm.py"
IGNORED_KEYS = {"provenance", "timestamp", "timing", "created"}  # plus any key naming seconds or a runtime


def _program(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def _run(*command: str, env: dict | None = None, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=check)


def _tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"({path} was not written)"
    return f"--- {path} (last {lines} lines) ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _missing_prerequisite() -> str | None:
    """Why this machine cannot run the test cluster, or None."""
    if not sys.platform.startswith("linux"):
        return f"SLURM needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "not root: the test writes /etc/slurm/slurm.conf and runs munged, slurmctld and slurmd as root"
    missing = sorted({f"{name} (Debian package {package})" for name, package in PROGRAMS.items() if not _program(name)})
    if missing:
        return f"missing {', '.join(missing)}; install them with `apt-get install slurm-wlm munge` (./setup.sh does)"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError as err:
        return f"snakemake-executor-plugin-slurm is not importable ({err}); ./setup.sh installs it"
    return None


def _node_hardware() -> tuple[str, dict[str, str]]:
    """This host's node line as `slurmd -C` prints it: (node name, {CPUs, Boards, ..., RealMemory})."""
    result = _run(_program("slurmd"), "-C")
    line = next((row for row in result.stdout.splitlines() if row.startswith("NodeName=")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"`slurmd -C` did not describe this node (rc {result.returncode}): {result.stdout}{result.stderr}")
    fields = dict(item.split("=", 1) for item in line.split())
    name = fields.pop("NodeName")
    return name, {key: fields[key] for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")}


def minutes(limit: str) -> int:
    """SLURM's time limit text ([D-]HH:MM:SS or MM:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return int(days or 0) * 1440 + hours * 60 + minutes + math.ceil(seconds / 60)


def megabytes(memory: str) -> int:
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", memory).groups()
    return round(float(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[unit])


class Cluster:
    """A running single-node SLURM: its node, its logs and what it knows about jobs."""

    def __init__(self, root: Path, logs: Path, node: str, hardware: dict[str, str]):
        self.root, self.log_dir, self.node, self.hardware = root, logs, node, hardware
        self.cpus, self.memory_mb = int(hardware["CPUs"]), int(hardware["RealMemory"])
        self.ctld_log, self.slurmd_log = logs / "slurmctld.log", logs / "slurmd.log"
        self.munge_socket = root / "munge" / "munge.socket"
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM")}
        self.env["PATH"] = SBIN_PATH

    def slurm_conf(self, ctld_port: int, slurmd_port: int) -> str:
        root, node = self.root, self.node
        hardware = " ".join(f"{key}={value}" for key, value in self.hardware.items())
        return textwrap.dedent(f"""\
            {CONFIG_MARKER} for a single-node test cluster; removed afterwards.
            ClusterName=weightlab-test
            SlurmctldHost={node}(127.0.0.1)
            SlurmctldPort={ctld_port}
            SlurmdPort={slurmd_port}
            AuthType=auth/munge
            CredType=cred/munge
            AuthInfo=socket={self.munge_socket}
            SlurmUser=root
            SlurmdUser=root
            StateSaveLocation={root}/state
            SlurmdSpoolDir={root}/spool
            SlurmctldPidFile={root}/slurmctld.pid
            SlurmdPidFile={root}/slurmd.pid
            SlurmctldLogFile={self.ctld_log}
            SlurmdLogFile={self.slurmd_log}
            SlurmctldDebug=info
            SlurmdDebug=info
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/none
            JobAcctGatherType=jobacct_gather/none
            AccountingStorageType=accounting_storage/none
            JobCompType=jobcomp/none
            MpiDefault=none
            SchedulerType=sched/backfill
            SelectType=select/cons_tres
            SelectTypeParameters=CR_Core_Memory
            ReturnToService=2
            MinJobAge={MIN_JOB_AGE}
            KillWait=5
            GresTypes=gpu
            NodeName={node} NodeAddr=127.0.0.1 {hardware} Gres=gpu:1 State=UNKNOWN
            PartitionName=cpu Nodes={node} Default=YES MaxTime=INFINITE State=UP
            PartitionName=gpu Nodes={node} MaxTime=INFINITE State=UP
            """)

    def start(self, name: str, *command: str) -> None:
        log = (self.log_dir / f"{name}.out").open("w")
        self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def wait_for(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {process.returncode} while waiting for {what}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")

    def stop(self) -> None:
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            jobs = self.scontrol("show", "jobs", "-o")
            ids = re.findall(r"^JobId=(\d+)", jobs, re.MULTILINE)
            if ids:
                _run(_program("scancel"), *ids, env=self.env)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def scontrol(self, *args: str) -> str:
        result = _run(_program("scontrol"), *args, env=self.env)
        return result.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (empty when SLURM no longer knows the job)."""
        text = self.scontrol("show", "job", "-o", job_id).strip()
        return dict(re.findall(r"(\S+?)=(\S*)", text)) if text.startswith("JobId=") else {}

    def logs(self) -> str:
        names = [self.log_dir / f"{name}.out" for name in ("munged", "slurmctld", "slurmd")]
        return "\n".join(_tail(path) for path in [self.ctld_log, self.slurmd_log, *names])


def _install_config(files: dict[str, str]) -> None:
    SLURM_ETC.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path, backup = SLURM_ETC / name, SLURM_ETC / (name + BACKUP_SUFFIX)
        if path.exists() and not backup.exists():  # an existing backup is the original of an interrupted run
            path.rename(backup)
        path.write_text(text)


def _restore_config() -> None:
    for name in CONFIG_FILES:
        path, backup = SLURM_ETC / name, SLURM_ETC / (name + BACKUP_SUFFIX)
        path.unlink(missing_ok=True)
        if backup.exists():
            backup.rename(path)


def clear_interrupted_config() -> bool:
    """Put back the SLURM configuration a killed test session left in /etc/slurm (its finaliser
    never ran), unless a running session holds the lock. Left there, it names a controller that
    no longer runs, and every Snakemake start waits about 10 s: the SLURM executor plugin runs
    `scontrol show config` when it is imported, and scontrol retries the dead controller."""
    path = SLURM_ETC / "slurm.conf"
    if not path.exists() or not path.read_text(errors="replace").startswith(CONFIG_MARKER):
        return False
    with LOCK_FILE.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a session's test cluster is up and uses it
        _restore_config()
    return True


def _bring_up(cluster: Cluster) -> None:
    """munged, slurmctld and slurmd, each waited for; then a GPU job must run. Raises RuntimeError saying what failed."""
    root = cluster.root
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    cluster.start(
        "munged", _program("munged"), "--foreground", "--force", f"--socket={cluster.munge_socket}", f"--key-file={key}",
        f"--pid-file={root / 'munge' / 'munged.pid'}", f"--log-file={cluster.log_dir / 'munged.log'}", f"--seed-file={root / 'munge' / 'seed'}",
    )

    def munge_round_trip() -> bool:
        if not cluster.munge_socket.exists():
            return False
        credential = _run(_program("munge"), "-n", "-S", str(cluster.munge_socket), env=cluster.env)
        if credential.returncode != 0:
            return False
        decoded = subprocess.run([_program("unmunge"), "-S", str(cluster.munge_socket)], input=credential.stdout,
                                 capture_output=True, text=True, timeout=30, env=cluster.env)
        return decoded.returncode == 0

    cluster.wait_for("munged answering on its socket", munge_round_trip, timeout=30)
    cluster.start("slurmctld", _program("slurmctld"), "-D", "-c", "-i")
    cluster.wait_for("slurmctld answering `scontrol ping`", lambda: "is UP" in cluster.scontrol("ping"), timeout=60)
    cluster.start("slurmd", _program("slurmd"), "-D", "-N", cluster.node)

    def node_idle() -> bool:
        state = _run(_program("sinfo"), "-h", "-n", cluster.node, "-o", "%T", env=cluster.env).stdout.split()
        if any(s.startswith(("drain", "down", "fail")) for s in state):
            raise RuntimeError(f"node {cluster.node} is {state}: {cluster.scontrol('show', 'node', cluster.node)}")
        return bool(state) and all(s == "idle" for s in state)

    cluster.wait_for(f"node {cluster.node} idle in both partitions", node_idle, timeout=60)
    out = cluster.log_dir / "gpu-probe.out"
    submitted = _run(_program("sbatch"), "--parsable", "-p", "gpu", "--gpus=1", "-t", "1", "-o", str(out),
                     "--wrap", "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES", env=cluster.env)
    if submitted.returncode != 0:
        raise RuntimeError(f"sbatch of a one-line GPU job failed: {submitted.stderr.strip()}")
    job_id = submitted.stdout.strip().split(";")[0]
    cluster.wait_for(f"probe job {job_id} to finish", lambda: cluster.job(job_id).get("JobState") not in (None, "PENDING", "RUNNING", "CONFIGURING", "COMPLETING"), timeout=60)
    state = cluster.job(job_id)
    if state.get("JobState") != "COMPLETED" or "CUDA_VISIBLE_DEVICES=0" not in out.read_text():
        raise RuntimeError(f"a one-line GPU job did not complete with its GPU: {state.get('JobState')}, {state.get('Reason')}, output {out.read_text() if out.exists() else None!r}")


def single_node_cluster(tmp_path_factory):
    """A single-node SLURM on this machine, yielded once (the body of test_slurm's `slurm_cluster`
    fixture); stopped and its configuration removed afterwards. Skips the test when it cannot start."""
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(f"no SLURM test cluster: {reason}")
    lock = LOCK_FILE.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        pytest.skip(f"no SLURM test cluster: another test session holds {LOCK_FILE} and runs its own")
    existing = SLURM_ETC / "slurm.conf"
    if existing.exists() and not existing.read_text(errors="replace").startswith(CONFIG_MARKER):  # not one left by an interrupted run
        ping = _run(_program("scontrol"), "ping", timeout=20)
        if "is UP" in ping.stdout:
            lock.close()
            pytest.skip("no SLURM test cluster: a controller configured in /etc/slurm/slurm.conf answers; "
                        "this machine runs SLURM already and the test will not replace its configuration")

    root = Path(tempfile.mkdtemp(prefix="weightlab-slurm-"))  # short: the munge socket path must fit a UNIX socket
    for folder in ("munge", "state", "spool"):
        (root / folder).mkdir()
    logs = tmp_path_factory.mktemp("slurm-logs")  # kept after the session, like the workflow copies
    try:
        node, hardware = _node_hardware()
    except RuntimeError as err:
        shutil.rmtree(root, ignore_errors=True)
        lock.close()
        pytest.skip(f"no SLURM test cluster: {err}")
    cluster = Cluster(root, logs, node, hardware)
    _install_config({
        "slurm.conf": cluster.slurm_conf(_free_port(), _free_port()),
        "gres.conf": f"# weightlab's test cluster: one fake GPU so that --gpus=1 jobs schedule\nNodeName={node} Name=gpu File=/dev/null\n",
    })
    failure = None
    try:
        _bring_up(cluster)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        failure = f"{err}\n{cluster.logs()}"
    try:
        if failure:
            pytest.skip(f"no SLURM test cluster: it did not start: {failure}")
        yield cluster
    finally:
        cluster.stop()
        _restore_config()
        shutil.rmtree(root, ignore_errors=True)
        lock.close()


# ---------------------------------------------------------------- the profile on this node


def slurm_profile() -> dict:
    return yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())


def gpu_partition_names() -> set[str]:
    partitions = yaml.safe_load((ROOT / "profiles/slurm/partitions.yaml").read_text())["partitions"]
    return {name for name, limits in partitions.items() if limits.get("max_gpu", 0) > 0}


def _fit_to_node(resources: dict, cluster: Cluster, where: str, notes: list[str]) -> list[str]:
    """`name=value` items of a resources mapping, memory lowered to what the node has (noted)."""
    items = []
    for name, value in resources.items():
        if name == "mem_mb" and isinstance(value, int) and value > cluster.memory_mb:
            notes.append(f"{where} mem_mb {value} -> {cluster.memory_mb} (the node's RealMemory)")
            value = cluster.memory_mb
        items.append(f"{name}={value}")
    return items


def cluster_arguments(cluster: Cluster) -> tuple[list[str], list[str]]:
    """What this test node needs on top of `--profile profiles/slurm`, and notes on what was changed.

    squeue for job states (no accounting database); a first status check after seconds, not 40;
    threads capped as in the local runs and at the node's CPUs (a rule's threads become
    --cpus-per-task, and a job asking for more CPUs than the node has is refused); memory requests
    above the node's capped to it (the command line replaces the profile's resource lists, so
    they are passed whole)."""
    profile, notes = slurm_profile(), []
    args = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", str(STATUS_CHECK_SECONDS),
            "--slurm-keep-successful-logs", "--max-threads", str(min(cluster.cpus, LOCAL_CORES))]
    defaults = profile.get("default-resources", {})
    fitted = _fit_to_node(defaults, cluster, "default", notes)
    if fitted != [f"{k}={v}" for k, v in defaults.items()]:
        args += ["--default-resources", *fitted]
    per_rule = profile.get("set-resources", {})
    items = [f"{rule}:{item}" for rule, resources in per_rule.items() for item in _fit_to_node(resources, cluster, rule, notes)]
    if items != [f"{rule}:{k}={v}" for rule, resources in per_rule.items() for k, v in resources.items()]:
        args += ["--set-resources", *items]
    return args, notes


def run_with_profile(workdir: Path, cluster: Cluster, *targets: str, configfiles: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, str]:
    """`snakemake <targets> --profile profiles/slurm` in `workdir`; (result, log text). The log is also in workdir/slurm-run.log."""
    extra, notes = cluster_arguments(cluster)
    config = ["--configfile", *configfiles] if configfiles else []
    command = [sys.executable, "-m", "snakemake", *targets, "--profile", "profiles/slurm", *config, *extra]
    env = {**cluster.env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    try:
        result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"snakemake with the SLURM profile ran past {RUN_TIMEOUT} s:\n{(err.stderr or b'')[-6000:]}\n{cluster.logs()}")
    log = "\n".join(f"# test node: {note}" for note in notes) + f"\n$ {' '.join(command)}\n{result.stdout}{result.stderr}"
    (workdir / "slurm-run.log").write_text(log)
    return result, log


def submitted_jobs(log: str) -> list[dict]:
    """Each job Snakemake scheduled, in order (a retried job again): rule, whether local, Snakemake
    jobid, threads, resources, and the SLURM jobid of the sbatch call that followed it, if any."""
    jobs, waiting = [], {}
    events = r"^(?P<local>local)?rule (?P<rule>\w+):\n(?P<body>(?:    .*\n?)+)|^Job (?P<job>\d+) has been submitted with SLURM jobid (?P<slurm>\d+)"
    for event in re.finditer(events, log, re.MULTILINE):
        if event.group("slurm"):
            waiting.pop(event.group("job"))["slurm_id"] = event.group("slurm")
            continue
        body = event.group("body")
        jobid = re.search(r"^\s+jobid: (\d+)$", body, re.MULTILINE).group(1)
        threads = re.search(r"^\s+threads: (\d+)$", body, re.MULTILINE)
        resources = re.search(r"^\s+resources: (.+)$", body, re.MULTILINE)
        values = dict(item.split("=", 1) for item in resources.group(1).split(", ")) if resources else {}
        job = {"rule": event.group("rule"), "local": bool(event.group("local")), "jobid": jobid,
               "threads": int(threads.group(1)) if threads else 1, "resources": values, "slurm_id": None}
        jobs.append(job)
        if not job["local"]:
            waiting[jobid] = job
    return jobs


# ---------------------------------------------------------------- results, compared


def _ignored(key: str) -> bool:
    return key in IGNORED_KEYS or "seconds" in key or "runtime" in key


def _normalised(value):
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items() if not _ignored(k)}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def _table(path: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return [{k: v for k, v in row.items() if not _ignored(k)} for row in rows]


def result_files(workdir: Path) -> dict[str, Path]:
    """Every JSON and CSV result of a run, by path relative to the workflow folder (logs and benchmarks aside)."""
    results = workdir / "results"
    skip = {results / "logs", results / "benchmarks"}
    return {str(p.relative_to(workdir)): p for p in sorted(results.rglob("*")) if p.suffix in (".json", ".csv") and not any(s in p.parents for s in skip)}


def differences(local: Path, cluster: Path) -> list[str]:
    problems = []
    for name, path in result_files(local).items():
        other = cluster / name
        if not other.exists():
            problems.append(f"{name}: written locally, missing from the SLURM run")
        elif path.suffix == ".csv":
            if _table(path) != _table(other):
                problems.append(f"{name}: rows differ (timestamps and runtimes ignored)")
        elif _normalised(json.loads(path.read_text())) != _normalised(json.loads(other.read_text())):
            problems.append(f"{name}: content differs (provenance, timestamps and timings ignored)")
    return problems

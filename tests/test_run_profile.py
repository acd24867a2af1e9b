"""benchmarks/run_profile.py on a constructed run log whose critical path and idle time are known."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("run_profile", ROOT / "benchmarks" / "run_profile.py")
run_profile = importlib.util.module_from_spec(spec)
sys.modules["run_profile"] = run_profile  # dataclasses look their module up while the class is built
spec.loader.exec_module(run_profile)


def job(stamp: str, rule: str, jobid: int, inputs: str, outputs: str, threads: int = 1) -> str:
    lines = [f"[Sat Dec  5 10:{stamp} 2026]", f"rule {rule}:"]
    if inputs:
        lines.append(f"    input: {inputs}")
    lines += [f"    output: {outputs}", f"    jobid: {jobid}", f"    threads: {threads}", "    resources: tmpdir=/tmp", ""]
    return "\n".join(lines)


def finished(stamp: str, jobid: int) -> str:
    return f"[Sat Dec  5 10:{stamp} 2026]\nFinished jobid: {jobid} (Rule: x)\n"


# a (0-10 s) feeds b (10-40 s) and c (10-20 s); d (20-25 s) reads c only: the critical path is a -> b (40 s),
# and from 20 s to 40 s... d runs 20-25, so 25-40 s has one of two cores idle.
LOG = "\n".join(
    [
        "Provided cores: 2",
        job("00:00", "a", 1, "", "a.out"),
        finished("00:10", 1),
        job("00:10", "b", 2, "a.out", "b.out"),
        job("00:10", "c", 3, "a.out", "c.out"),
        finished("00:20", 3),
        job("00:20", "d", 4, "c.out", "d.out"),
        finished("00:25", 4),
        finished("00:40", 2),
    ]
)


def test_critical_path_and_idle_stretches_of_a_known_schedule():
    jobs, cores = run_profile.parse_log(LOG)
    assert cores == 2 and sorted(j.rule for j in jobs.values()) == ["a", "b", "c", "d"]
    chain = run_profile.critical_path(jobs)
    assert [j.rule for j in chain] == ["a", "b"]
    assert sum(j.seconds for j in chain) == 40
    spans = run_profile.underused(jobs, cores)
    lengths = sorted(((b - a).total_seconds(), n) for a, b, n in spans)
    assert lengths == [(10.0, 1), (15.0, 1)]  # 0-10 s only a runs; 25-40 s only b

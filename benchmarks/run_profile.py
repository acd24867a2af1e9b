"""How busy a run kept the machine, and what its critical path was.

Reads one Snakemake run log (each job's start and finish time, threads, inputs, outputs and
benchmark file) and the per-job benchmark TSVs (their `cpu_time`), and prints:

- the run's wall time, the cores Snakemake was given, the CPU model;
- CPU utilisation: the jobs' CPU time summed / (wall time × cores) — the issue's "both cores
  at least 90% busy" — and the scheduled occupancy: threads × duration summed over jobs /
  (wall time × cores), which says whether a low utilisation comes from idle slots or from
  jobs that hold threads without using them;
- the critical path: the longest chain of jobs through the DAG (edges from a job's outputs to
  the jobs that read them), with each job's duration: no schedule can finish the run faster;
- the stretches where fewer jobs ran than there were cores, longest first.

Run in the workflow folder after a run (`snakemake --cores 8 all`):
    python benchmarks/run_profile.py [--log .snakemake/log/<run>.snakemake.log]
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


@dataclass
class Job:
    jobid: int
    rule: str
    start: datetime
    end: datetime | None = None
    threads: int = 1
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    benchmark: str | None = None
    cpu_time: float = 0.0

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.end else 0.0


def parse_log(text: str) -> tuple[dict[int, Job], int]:
    """The jobs a run log records (only those that finished), and the cores it was given."""
    jobs: dict[int, Job] = {}
    cores = 1
    stamp: datetime | None = None
    current: dict | None = None
    lines = text.splitlines()
    for line in lines:
        if match := re.match(r"Provided cores: (\d+)", line):
            cores = int(match.group(1))
        if match := STAMP.match(line):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        if match := re.match(r"^(?:local)?rule (\w+):$", line):
            current = {"rule": match.group(1), "start": stamp, "threads": 1}
            continue
        if current is not None and (match := re.match(r"^\s+(input|output|jobid|benchmark|threads): (.*)$", line)):
            key, value = match.groups()
            if key in ("input", "output"):
                current[key] = [v.strip() for v in value.split(",") if v.strip()]
            elif key in ("jobid", "threads"):
                current[key] = int(value)
            else:
                current[key] = value.strip()
            if key == "jobid":
                jobs[current["jobid"]] = Job(current["jobid"], current["rule"], current["start"])
            continue
        if current is not None and "jobid" in current and not line.startswith(" "):
            job = jobs[current["jobid"]]
            job.threads = current.get("threads", 1)
            job.inputs = current.get("input", [])
            job.outputs = current.get("output", [])
            job.benchmark = current.get("benchmark")
            current = None
        if match := re.match(r"^Finished jobid: (\d+)", line):
            if int(match.group(1)) in jobs:
                jobs[int(match.group(1))].end = stamp
    return {k: j for k, j in jobs.items() if j.end is not None}, cores


def read_cpu_times(jobs: dict[int, Job], root: Path) -> None:
    for job in jobs.values():
        if job.benchmark and (root / job.benchmark).exists():
            job.cpu_time = float(pd.read_csv(root / job.benchmark, sep="\t")["cpu_time"].iloc[-1])


def critical_path(jobs: dict[int, Job]) -> list[Job]:
    """The longest chain of jobs (by duration) along output -> input edges."""
    producer = {out: job.jobid for job in jobs.values() for out in job.outputs}
    order = sorted(jobs.values(), key=lambda j: j.start)
    best: dict[int, tuple[float, int | None]] = {}
    for job in order:
        parents = {producer[i] for i in job.inputs if i in producer and producer[i] != job.jobid}
        prev = max(parents, key=lambda p: best[p][0], default=None) if parents else None
        best[job.jobid] = (job.seconds + (best[prev][0] if prev is not None else 0.0), prev)
    node = max(best, key=lambda k: best[k][0])
    chain = []
    while node is not None:
        chain.append(jobs[node])
        node = best[node][1]
    return chain[::-1]


def underused(jobs: dict[int, Job], cores: int) -> list[tuple[datetime, datetime, int]]:
    """Stretches where the running jobs held fewer threads than there were cores."""
    events = sorted({j.start for j in jobs.values()} | {j.end for j in jobs.values()})
    spans = []
    for a, b in zip(events, events[1:]):
        held = sum(min(j.threads, cores) for j in jobs.values() if j.start <= a and j.end >= b)
        if held < cores:
            if spans and spans[-1][1] == a and spans[-1][2] == held:
                spans[-1] = (spans[-1][0], b, held)
            else:
                spans.append((a, b, held))
    return sorted(spans, key=lambda s: -(s[1] - s[0]).total_seconds())


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def report(jobs: dict[int, Job], cores: int) -> list[str]:
    start = min(j.start for j in jobs.values())
    end = max(j.end for j in jobs.values())
    wall = (end - start).total_seconds()
    cpu = sum(j.cpu_time for j in jobs.values())
    held = sum(min(j.threads, cores) * j.seconds for j in jobs.values())
    lines = [
        f"CPU: {cpu_model()}; cores given: {cores}; jobs: {len(jobs)}",
        f"wall time {wall / 60:.1f} min; jobs' CPU time {cpu:.0f} s; CPU utilisation {cpu / (wall * cores):.0%}; "
        f"scheduled occupancy {held / (wall * cores):.0%}",
        "",
        "critical path (no schedule finishes sooner):",
    ]
    chain = critical_path(jobs)
    for job in chain:
        lines.append(f"  {job.seconds:7.0f} s  {job.rule}  ({', '.join(job.outputs[:1])})")
    lines.append(f"  {sum(j.seconds for j in chain):7.0f} s  in all ({sum(j.seconds for j in chain) / wall:.0%} of the wall time)")
    lines.append("")
    lines.append("longest stretches with idle cores:")
    for a, b, n in underused(jobs, cores)[:8]:
        running = [j.rule for j in jobs.values() if j.start <= a and j.end >= b]
        lines.append(f"  {(b - a).total_seconds():6.0f} s  from {a:%H:%M:%S}, {n} of {cores} threads busy: {', '.join(running) or 'nothing'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="the run's Snakemake log (default: the newest in .snakemake/log)")
    args = parser.parse_args()
    log = args.log or max(Path(".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    jobs, cores = parse_log(log.read_text())
    read_cpu_times(jobs, Path("."))
    print("\n".join(report(jobs, cores)))


if __name__ == "__main__":
    main()

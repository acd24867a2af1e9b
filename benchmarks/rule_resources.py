"""What every rule really used on a run, against what it declares: the source of `mem_mb` in
rules/*.smk and of the SLURM profile's limits.

Reads the per-job benchmark files (results/benchmarks/, one TSV per job: wall time, peak RSS)
and the run's Snakemake log (each job's declared resources), and prints one Markdown row per
rule: jobs, longest wall time, largest peak RSS, declared mem_mb and the headroom between them.

Run in the workflow folder after a run (default preset: `snakemake --cores 8 all`):
    python benchmarks/rule_resources.py [--log .snakemake/log/<run>.snakemake.log]
"""

from __future__ import annotations

import argparse
import glob
import re
from pathlib import Path

import pandas as pd


def benchmark_patterns(rules_dir: Path) -> dict[str, str]:
    """rule -> its benchmark path pattern as a glob (wildcards become *)."""
    patterns = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            name = re.match(r"rule (\w+):", block)
            bench = re.search(r'benchmark:\s*\n\s*"([^"]+)"', block)
            if name and bench:
                patterns[name.group(1)] = re.sub(r"\{[^}]+\}", "*", bench.group(1))
    return patterns


def declared_resources(log: Path) -> dict[str, dict[str, str]]:
    """rule -> the resources its jobs declared, from a Snakemake run log."""
    declared: dict[str, dict[str, str]] = {}
    rule = None
    for line in log.read_text().splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif rule and (match := re.match(r"^\s+resources: (.*)", line)):
            declared[rule] = dict(item.split("=", 1) for item in match.group(1).split(", ") if "=" in item)
            rule = None
    return declared


def measured(pattern: str) -> pd.DataFrame:
    files = sorted(glob.glob(pattern))
    return pd.concat([pd.read_csv(f, sep="\t") for f in files], ignore_index=True) if files else pd.DataFrame()


def table(rules_dir: Path, log: Path) -> list[str]:
    declared = declared_resources(log)
    lines = ["| rule | jobs | longest wall time | largest peak RSS | declared mem_mb | declared / peak |", "|---|---|---|---|---|---|"]
    for rule, pattern in benchmark_patterns(rules_dir).items():
        runs = measured(pattern)
        if runs.empty:
            continue
        peak = float(runs["max_rss"].max())
        mem = declared.get(rule, {}).get("mem_mb")
        ratio = f"{float(mem) / peak:.1f}" if mem and peak > 0 else "—"
        lines.append(f"| `{rule}` | {len(runs)} | {runs['s'].max():.0f} s | {peak:,.0f} MB | {mem or '—'} | {ratio} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=Path("rules"))
    parser.add_argument("--log", type=Path, help="the run's Snakemake log (default: the newest in .snakemake/log)")
    args = parser.parse_args()
    log = args.log or max(Path(".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    print("\n".join(table(args.rules, log)))


if __name__ == "__main__":
    main()

"""Per module, the share of mutants killed, from `mutmut results --all true` (see mutation.sh).

A mutant counts as killed when a test failed on it; one that timed out (15 x its tests' time
plus a constant, see mutation.sh) is shown apart and counts against the score, since on a
loaded machine a timeout may only mean the run waited for a core; survivors and mutants no test
reached count against it too. Mutants of an interrupted run that were not run yet ("not checked")
are counted apart and left out of the share. Prints a Markdown table and then every mutant not
killed, for the triage file.

--earlier: the results of an earlier run of the same library (the full run, before a recheck). A
mutant "not checked" now keeps its earlier verdict: when a recheck adds a test file, mutmut resets
every verdict (its test selection changed) and reruns only the mutants not killed before. The
merged results are written back to the results file, so that a later recheck starts from them.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

KILLED = {"killed", "caught by type check"}
NOT_RUN = "not checked"  # mutmut's word for a mutant an interrupted run has not reached
LINE = re.compile(r"^\s*(?P<name>[\w.]+__mutmut_\d+):\s*(?P<status>.+?)\s*$")


def module_of(mutant: str) -> str:
    """'weightlab.stats.x_cohens_d__mutmut_3' -> 'weightlab.stats'; methods are 'xǁClassǁmethod'."""
    return mutant.split("__mutmut_")[0].rsplit(".", 1)[0]


def scores(lines: list[str]) -> tuple[dict[str, Counter], list[tuple[str, str]]]:
    by_module: dict[str, Counter] = defaultdict(Counter)
    not_killed = []
    for line in lines:
        match = LINE.match(line)
        if not match:
            continue
        name, status = match["name"], match["status"]
        by_module[module_of(name)][status] += 1
        if status not in KILLED:
            not_killed.append((name, status))
    return dict(by_module), not_killed


def with_earlier(lines: list[str], earlier: list[str]) -> list[str]:
    """The results `lines` with each mutant they have not run ("not checked") given its verdict in `earlier`."""
    before = {m["name"]: m["status"] for line in earlier if (m := LINE.match(line))}
    merged = []
    for line in lines:
        match = LINE.match(line)
        if match and match["status"] == NOT_RUN and before.get(match["name"], NOT_RUN) != NOT_RUN:
            line = f"    {match['name']}: {before[match['name']]}"
        merged.append(line)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--target", default="")
    parser.add_argument("--seconds", type=int, default=0)
    parser.add_argument("--commit", default="")
    parser.add_argument("--earlier", type=Path, help="results of an earlier run of the same library")
    args = parser.parse_args()
    lines = args.results.read_text().splitlines()
    if args.earlier:
        lines = with_earlier(lines, args.earlier.read_text().splitlines())
        args.results.write_text("\n".join(lines) + "\n")
    by_module, not_killed = scores(lines)
    print(f"## {args.target}: {date.today().isoformat()}, commit {args.commit}, {args.seconds // 60} min {args.seconds % 60} s\n")
    partial = any(counts[NOT_RUN] for counts in by_module.values())
    print(f"| module | mutants | killed | survived | no tests | timeout | other |{' not run yet |' if partial else ''} killed share |")
    print(f"|---|---:|---:|---:|---:|---:|---:|{'---:|' if partial else ''}---:|")
    for module in sorted(by_module):
        counts = by_module[module]
        total = sum(counts.values())
        run = total - counts[NOT_RUN]
        killed = sum(counts[s] for s in KILLED)
        other = run - killed - counts["survived"] - counts["no tests"] - counts["timeout"]
        share = f"{killed / run:.0%}" if run else "n/a"
        print(f"| {module} | {total} | {killed} | {counts['survived']} | {counts['no tests']} | {counts['timeout']} | {other} |"
              f"{f' {counts[NOT_RUN]} |' if partial else ''} {share} |")
    print("\nNot killed:\n")
    for name, status in not_killed:
        if status != NOT_RUN:
            print(f"- `{name}`: {status}")


if __name__ == "__main__":
    main()

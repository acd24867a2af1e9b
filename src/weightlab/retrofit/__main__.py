"""python -m weightlab.retrofit compare [folder]: the comparison table of a retrofit results folder."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from weightlab.errors import WeightlabError
from weightlab.retrofit.summary import comparison_table, load_results, summarise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weightlab.retrofit", description="Geometry retrofit of a pretrained LM.")
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare", help="print the comparison table of a results folder")
    compare.add_argument("folder", nargs="?", default="results/retrofit")
    args = parser.parse_args(argv)
    try:
        results, baseline = load_results(args.folder)
    except WeightlabError as err:
        print(f"weightlab error: {err}", file=sys.stderr)
        return 1
    print(comparison_table(summarise(results, baseline)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

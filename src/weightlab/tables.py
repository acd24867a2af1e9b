"""Key result tables as one standalone HTML page per study, for the Snakemake report.

Each study turns its result files into `Table`s (``weightlab.<study>.tables``); this module
formats them one way for every study: numbers to four significant digits, missing values as a
dash, a criterion's verdict coloured (pass green, fail red, not evaluable grey, not testable
amber), the source files and their provenance under the tables. `criteria_table` shows a study's
criteria (``weightlab.verdicts``) in one order: preconditions, then expectations, then checks. Rendering uses pandas' Styler; nothing here knows
Snakemake or torch.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from weightlab.errors import InputError
from weightlab.io import atomic_path
from weightlab.verdicts import Criterion, ordered

VERDICT_COLUMN = "verdict"
PASS, FAIL, NOT_EVALUABLE, NOT_TESTABLE = "pass", "fail", "not evaluable", "not testable"
VERDICT_STYLES = {
    PASS: "background-color: #d9f0d3; color: #1b5e20; font-weight: 600",
    FAIL: "background-color: #fbd5d5; color: #8e1b1b; font-weight: 600",
    NOT_EVALUABLE: "background-color: #eeeeee; color: #555555",
    NOT_TESTABLE: "background-color: #fdebc8; color: #7a4a00; font-weight: 600",
}

PAGE_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.2em 1.6em; color: #222; }
h1 { font-size: 1.35em; margin-bottom: 0.2em; }
h2 { font-size: 1.1em; margin: 1.4em 0 0.2em; }
p.note { margin: 0.2em 0 0.6em; color: #444; max-width: 62em; }
table.wl-table { border-collapse: collapse; font-size: 0.86em; margin-bottom: 0.4em; }
table.wl-table th { background: #f3f3f3; text-align: left; padding: 4px 8px; border-bottom: 2px solid #bbb; }
table.wl-table td { padding: 3px 8px; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
table.wl-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
footer { margin-top: 2em; font-size: 0.8em; color: #666; }
footer code { font-size: 0.95em; }
"""


@dataclass(frozen=True)
class Table:
    """One key table: a title, the rows, and a sentence on how to read it."""

    title: str
    frame: pd.DataFrame
    note: str = ""


def verdict(passed: bool | None) -> str:
    """'pass', 'fail' or 'not evaluable' (None: the criterion could not be computed)."""
    return NOT_EVALUABLE if passed is None else PASS if passed else FAIL


def format_value(value: Any, spec: str | None = None) -> str:
    """A cell as text: four significant digits (more where four would print a misleading 1),
    a dash for missing or NaN, yes/no for booleans, mappings as 'key value' pairs and sequences in
    brackets (so a criterion's measured values per model, or an interval, fit one cell). With a
    format `spec` (e.g. '+.1%'), a number is written by it instead (the dash stays)."""
    if value is None:
        return "—"
    if spec is not None and _is_number(value) and not math.isnan(value):
        return format(value, spec).replace("-", "−")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace("-", "−")
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        text = f"{value:.4g}"
        if abs(float(text)) == 1 and abs(value) != 1:  # 0.9999937 is not 1
            text = f"{value:.8g}"
        return text.replace("-", "−")
    if isinstance(value, Mapping):
        if any(isinstance(item, Mapping) for item in value.values()):
            return "; ".join(f"{key} ({format_value(item)})" for key, item in value.items())
        return ", ".join(f"{key} {format_value(item)}" for key, item in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table_html(table: Table) -> str:
    """The table's HTML: every cell formatted with `format_value` and escaped, numbers
    right-aligned, the verdict column coloured."""
    data = table.frame.reset_index(drop=True)
    if data.empty:
        return '<p class="note"><em>no rows</em></p>'
    numeric = data.map(_is_number)
    styler = data.style.format(lambda v: html.escape(format_value(v)))
    styler = styler.hide(axis="index").set_table_attributes('class="wl-table"')
    styler = styler.set_td_classes(numeric.replace({True: "num", False: ""}))
    if VERDICT_COLUMN in data.columns:
        styler = styler.map(lambda v: VERDICT_STYLES.get(v, ""), subset=[VERDICT_COLUMN])
    return styler.to_html()


def provenance_line(source: str, provenance: Mapping[str, Any] | None) -> str:
    """'<source>: commit …, seed …, created …' from a result's provenance block."""
    if not provenance:
        return f"<code>{html.escape(source)}</code>"
    parts = [f"commit {str(provenance.get('git_commit', 'unknown'))[:12]}", f"seed {provenance.get('seed')}",
             f"created {provenance.get('created', '?')}"]
    return f"<code>{html.escape(source)}</code>: " + html.escape(", ".join(parts))


def page_html(title: str, tables: Sequence[Table], sources: Mapping[str, Mapping[str, Any] | None], intro: str = "") -> str:
    """A standalone HTML page (inline style, no scripts) with every table and its sources."""
    if not tables:
        raise InputError(f"no tables for '{title}': the study's result files gave nothing to show; re-run its rules.")
    body = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        body.append(f'<p class="note">{html.escape(intro)}</p>')
    for table in tables:
        body.append(f"<h2>{html.escape(table.title)}</h2>")
        if table.note:
            body.append(f'<p class="note">{html.escape(table.note)}</p>')
        body.append(table_html(table))
    footer = "<br>".join(provenance_line(source, prov) for source, prov in sources.items())
    body.append(f"<footer>From {footer}</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_page(path: str, title: str, tables: Sequence[Table], sources: Mapping[str, Mapping[str, Any] | None], intro: str = "") -> None:
    """Render the page and write it atomically (nothing half-written on error)."""
    text = page_html(title, tables, sources, intro)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def frame(rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str]) -> pd.DataFrame:
    """A DataFrame of `rows` with only `columns` (key -> heading), in that order; a key missing
    from a row is a missing value, so tables of older result files still render."""
    return pd.DataFrame([{heading: row.get(key) for key, heading in columns.items()} for row in rows],
                        columns=list(columns.values()), dtype=object)


CRITERION_COLUMNS = {"id": "criterion", "kind": "kind", "statement": "statement", "source": "source", "threshold": "threshold",
                     "value": "measured", "interval": "95% interval", "verdict": "verdict", "reason": "reason",
                     "depends_on": "needs"}


def verdict_text(code: str) -> str:
    """A criterion record's verdict code as the table shows it ('not_testable' -> 'not testable')."""
    return code.replace("_", " ")


def criteria_table(criteria: Sequence[Criterion], title: str, note: str = "") -> Table:
    """A study's criteria as one table: preconditions first, then expectations, then our checks,
    each with its threshold, measured value, interval and coloured verdict."""
    rows = [{**c.as_dict(), "verdict": verdict_text(c.verdict), "depends_on": ", ".join(c.depends_on) or None}
            for c in ordered(criteria)]
    return Table(title, frame(rows, CRITERION_COLUMNS), note)


def study_verdict_note(document: Mapping[str, Any]) -> str:
    """'Verdict: not testable — <why>.' from a criteria document, for a table's note."""
    return f"Study verdict: {document['verdict']} — {document['reason']}."

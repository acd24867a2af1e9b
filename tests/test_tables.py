"""The report's key tables: formatting, verdict colours, and each study's tables on constructed results."""

import html
import math
import re

import pandas as pd
import pytest

from weightlab.errors import InputError
from weightlab.tables import FAIL, NOT_EVALUABLE, PASS, Table, format_value, frame, page_html, verdict, write_page


def cells(page: str, title: str) -> list[list[str]]:
    """The text of every body cell of the table under heading `title` in `page`."""
    section = page.split(f"<h2>{html.escape(title)}</h2>", 1)[1].split("<h2>", 1)[0]
    body = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]


@pytest.mark.parametrize("value, text", [
    (None, "—"), (float("nan"), "—"), (True, "yes"), (False, "no"), (0.123456, "0.1235"), (-0.5, "−0.5"),
    (0.9999937, "0.9999937"),  # four digits would print a misleading 1
    (2.0, "2"), (179.02266, "179"), (2.611535e10, "2.612e+10"), (11161, "11,161"), (float("inf"), "∞"), ([-0.1, 0.25], "[−0.1, 0.25]"),
    ({"A1": 0.25, "A2": 0.2}, "A1 0.25, A2 0.2"), ({"naive": {"p": 1.0}, "aligned": {"p": 0.5}}, "naive (p 1); aligned (p 0.5)"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_format_value_with_a_spec_formats_numbers_only():
    assert format_value(-0.25, "+.1%") == "−25.0%" and format_value(1234.5, ",.1f") == "1,234.5"
    assert format_value(None, ".2f") == format_value(float("nan"), ".2f") == "—" and format_value(True, ".2f") == "yes"


def test_verdict_of_a_criterion():
    assert (verdict(True), verdict(False), verdict(None)) == (PASS, FAIL, NOT_EVALUABLE)


def test_page_colours_verdicts_escapes_text_and_right_aligns_numbers():
    table = Table("Criteria", pd.DataFrame({"criterion": ["<b>x</b>", "y", "z"], "measured": [0.5, None, 3],
                                            "verdict": [PASS, FAIL, NOT_EVALUABLE]}, dtype=object), note="a & b")
    page = page_html("Study", [table], {"results/x.json": {"git_commit": "abcdef1234567890", "seed": 3, "created": "today"}})
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "a &amp; b" in page
    assert cells(page, "Criteria") == [["<b>x</b>", "0.5", "pass"], ["y", "—", "fail"], ["z", "3", "not evaluable"]]
    styles = dict(re.findall(r"#(T_\w+_row\d+_col2)\s*\{\s*([^}]*)\}", page))
    assert len(styles) == 3 and "#d9f0d3" in styles[sorted(styles)[0]] and "#fbd5d5" in styles[sorted(styles)[1]]
    assert re.search(r'<td id="T_\w+_row0_col1" class="data row0 col1 num"', page)  # a number cell
    assert not re.search(r'<td id="T_\w+_row0_col0" class="[^"]*\bnum\b', page)  # a text cell
    assert "commit abcdef123456, seed 3" in page and "<script" not in page


def test_frame_keeps_column_order_and_tolerates_missing_keys():
    table = frame([{"b": 2, "a": 1}, {"a": 3}], {"a": "first", "b": "second"})
    assert list(table.columns) == ["first", "second"]
    assert table.iloc[1, 1] is None


def test_a_page_without_tables_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(InputError, match="no tables"):
        write_page(str(tmp_path / "t.html"), "Empty", [], {})
    assert not list(tmp_path.iterdir())


def test_rebasin_tables_carry_every_criterion_with_its_verdict():
    from weightlab.rebasin.tables import key_tables
    from weightlab.verdicts import EXPECTATION, PRECONDITION, criteria_document, criterion

    curve = {"loss_barrier": 0.5, "loss_barrier_mean_endpoint": 0.6, "accuracy_barrier": 0.1, "semantic_barrier": 0.02}
    barriers = {"barrier_env": "A", "definitions": {}, "pairs": {"A1-A2": {"kind": "same", "naive": curve, "aligned": {**curve, "loss_barrier": 0.05}}}}
    srs = {"models": {"A1": {"srs": 0.3, "ood_drop": 0.25}}, "definition": "SRS = ..."}
    report = criteria_document("rebasin", "H.", [
        criterion("high_srs", "s", "expected result 1", EXPECTATION, "in [0.2, 0.4]", {"A1": 0.3}, True),
        criterion("ood_drop", "o", "expected result 1", EXPECTATION, "> 0.2", {"A1": 0.1}, False, depends_on=("learns",)),
        criterion("learns", "l", "ours", PRECONDITION, ">= 0.9", {"A1": 0.5}, False)])
    tables = key_tables(barriers, srs, report)
    page = page_html("Re-Basin", tables, {})
    criteria = cells(page, tables[0].title)
    assert [row[0] for row in criteria] == ["learns", "high_srs", "ood_drop"]  # preconditions first
    assert [row[7] for row in criteria] == ["fail", "pass", "not testable"]
    assert criteria[1][4] == "in [0.2, 0.4]" and criteria[2][5] == "A1 0.1" and criteria[2][9] == "learns"
    assert "Study verdict: not testable" in page and "#fdebc8" in page  # not testable has its own colour
    assert [row[:4] for row in cells(page, tables[2].title)] == [["A1-A2", "same", "naive", "0.5"], ["A1-A2", "same", "aligned", "0.05"]]


def test_repair_grid_summary_averages_only_repaired_runs():
    from weightlab.repair.tables import grid_by_type, key_tables

    def run(kind, size, ok, test_after, target=None):
        return {"experiment_id": f"{kind}-{size}-{test_after}", "repair_set_type": kind, "requested_repair_set_size": size,
                "target_class": target, "repair_successful": ok, "repair_runtime_seconds": 2.0,
                "baseline_accuracy_edit_set": 0.0, "repaired_accuracy_edit_set": 1.0 if ok else 0.0,
                "baseline_accuracy_test_set": 0.8, "repaired_accuracy_test_set": test_after,
                "baseline_accuracy_drawdown_set": 0.8, "repaired_accuracy_drawdown_set": test_after}

    records = [run("misclassified", 10, True, 0.7), run("misclassified", 10, True, 0.6), run("misclassified", 10, False, 0.8),
               run("class_homogeneous_incorrect", 50, True, 0.75, target=2)]
    summary = grid_by_type(records).set_index(["edit-set type", "edit points (requested)"])
    mis = summary.loc[("misclassified", 10)]
    assert (mis["runs"], mis["repaired"]) == (3, 2)
    assert mis["mean Δ test acc."] == pytest.approx(-0.15) and mis["mean Δ edit acc."] == pytest.approx(1.0)
    assert summary.loc[("class_homogeneous_incorrect", 50)]["mean Δ drawdown acc."] == pytest.approx(-0.05)
    tables = key_tables({"records": records, "runs": 4, "repaired": 3, "base": {"test_accuracy": 0.8, "num_test": 500}})
    assert "3 of 4 repaired" in tables[1].title and len(tables[1].frame) == 4
    assert tables[1].frame.iloc[0, 0] == "class_homogeneous_incorrect-50-0.75"  # sorted by type, class, size


def test_retrofit_table_starts_from_the_baseline():
    from weightlab.retrofit.tables import key_tables

    summary = {"baseline": {"conditioning": 100.0, "activation_conditioning": 5.0, "perplexity": 20.0},
               "runs": {"standard": {"steps": 4, "transports": 0, "final_conditioning": 90.0, "conditioning_change": -0.1,
                                     "final_perplexity": 19.0, "perplexity_change": -0.05}},
               "lowest_conditioning": "standard", "lowest_perplexity": "standard"}
    page = page_html("Retrofit", key_tables(summary), {})
    rows = cells(page, "Continued training three ways against the baseline")
    assert rows[0][:4] == ["baseline (unmodified)", "0", "0", "100"] and rows[1][:5] == ["standard", "4", "0", "90", "−0.1"]


def test_separability_tables_count_and_colour_every_criterion():
    from weightlab.separability.tables import key_tables
    from weightlab.verdicts import EXPECTATION, PRECONDITION, criteria_document, criterion

    document = criteria_document("separability", "H.", [
        criterion("A2", "s", "src", EXPECTATION, "in [0.55, 0.65]", 0.6, True, depends_on=("A1",)),
        criterion("A6", "d", "src", EXPECTATION, "> 4.0", None, None, "needs >= 2 seeds", depends_on=("A1",)),
        criterion("D1", "r", "src", EXPECTATION, "> 2", 1.1, False, depends_on=("D_superposition",)),
        criterion("A1", "c", "src", PRECONDITION, ">= 0.95", 0.97, True),
        criterion("D_superposition", "m", "ours", PRECONDITION, "> 1", 0.8, False)])
    criteria = {**document, "aggregate": {"conditions": {"a_control": {"values": [0.97], "n": 1, "mean": 0.97, "std": math.nan}},
                                          "cohens_d": {"a_control_vs_a_constraint": math.nan}},
                "seeds": {"a_control": [0]}}
    tables = key_tables(criteria)
    page = page_html("Separability", tables, {})
    assert tables[0].title == "Criteria (expectations: 1 pass, 0 fail, 1 not testable, 1 not evaluable)"
    rows = cells(page, tables[0].title)
    assert [(row[0], row[7]) for row in rows] == [("A1", "pass"), ("D_superposition", "fail"), ("A2", "pass"),
                                                  ("A6", "not evaluable"), ("D1", "not testable")]
    assert "Study verdict: not testable" in page
    assert cells(page, tables[1].title) == [["a_control", "[0]", "1", "0.97", "—"]]
    assert cells(page, tables[2].title) == [["a_control vs a_constraint", "—"]]


def test_drift_rows_put_verdict_measures_and_the_primary_control_first():
    from weightlab.drift.tables import effect_rows

    def result(d, reading):
        return {"n_group": 10, "d": d, "ci": [d - 0.1, d + 0.1], "equivalence_ci": [d - 0.08, d + 0.08], "reading": reading}

    statistics = {"primary_control": "module_norm", "verdict_measures": ["cosine", "l2"],
                  "comparisons": {"snip_top": {"relative": {"module_norm": result(0.3, "H1")},
                                               "l2": {"module": result(0.9, "H1"), "module_norm": result(0.05, "no_differential_drift")}}}}
    rows = effect_rows(statistics)
    assert [(r["measure"], r["control"], r["reading"]) for r in rows] == [
        ("l2", "module_norm (primary)", "no differential drift"), ("l2", "module", "H1"), ("relative (secondary)", "module_norm (primary)", "H1")]

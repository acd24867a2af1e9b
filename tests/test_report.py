"""The HTML report (`snakemake --report`), built from every study's smoke run and opened in headless
Chromium: five categories, every figure a study writes with its caption, each study's key tables."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, copy_workflow, snakemake

pytestmark = pytest.mark.workflow

CATEGORIES = {"Re-Basin": "rebasin", "Provable repair": "repair", "Geometry retrofit": "retrofit",
              "Separability audits": "separability", "Safety-neuron drift": "drift"}
PASS_GREEN, FAIL_RED, NOT_TESTABLE_AMBER = (0xD9, 0xF0, 0xD3), (0xFB, 0xD5, 0xD5), (0xFD, 0xEB, 0xC8)  # weightlab.tables.VERDICT_STYLES
# Where the screenshot is kept after the run (git-ignored); WEIGHTLAB_TEST_ARTIFACTS moves it.
ARTIFACTS = Path(os.environ.get("WEIGHTLAB_TEST_ARTIFACTS", ROOT / ".test-artifacts"))


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("headless Chromium is not installed (Debian package 'chromium'; setup.sh installs it)")


def run_chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={user_data}",
               "--virtual-time-budget=15000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def embedded(page: str, name: str) -> dict:
    """A JSON object the report embeds as `var <name> = {...};`."""
    match = re.search(rf"var {name} = (\{{.*?\}});\s*</script>", page, re.S)
    assert match, f"the report embeds no '{name}'"
    return json.loads(match.group(1))


def results_in(page: str) -> dict:
    return embedded(page, "results")


def visible_text(dom: str) -> str:
    body = re.sub(r"<script.*?</script>", " ", dom[dom.find("<body"):], flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.fixture(scope="module")
def report(smoke_study, tmp_path_factory) -> Path:
    """One workflow folder holding every study's smoke results and Snakemake's records of them,
    and the report built from it."""
    workdir = copy_workflow(tmp_path_factory.mktemp("report") / "workflow")
    for study in CATEGORIES.values():
        run = smoke_study(study)
        shutil.copytree(run / "results", workdir / "results", dirs_exist_ok=True)
        shutil.copytree(run / ".snakemake" / "metadata", workdir / ".snakemake" / "metadata", dirs_exist_ok=True)
    snakemake(workdir, "--report", "results/report.html", timeout=600)
    return workdir / "results" / "report.html"


def test_report_has_every_figure_with_a_caption_and_each_studys_key_tables(report):
    page = report.read_text()
    results, categories = results_in(page), embedded(page, "categories")
    assert set(categories) == set(CATEGORIES)
    for category, study in CATEGORIES.items():
        assert set(categories[category]) == {"Figures", "Key tables"}, category
        assert categories[category]["Key tables"] == [f"results/{study}/tables.html"]
        written = {str(p.relative_to(report.parents[1])) for p in (report.parent / study).rglob("*.png")}
        assert written and set(categories[category]["Figures"]) == written, f"{category}: figures written but not in the report"
    for path, entry in results.items():
        caption = re.sub(r"<[^>]+>", "", entry["caption"])
        assert len(caption) > 150, f"{path} has no real caption"
    for study in CATEGORIES.values():
        entry = results[f"results/{study}/tables.html"]
        assert entry["mime_type"] == "text/html"
        tables = base64.b64decode(entry["data_uri"].split("base64,", 1)[1]).decode()
        assert tables.count("<table") >= 1 and "<footer>From <code>results/" in tables, study
    criteria = base64.b64decode(results["results/separability/tables.html"]["data_uri"].split("base64,", 1)[1]).decode()
    # every criterion of A-D and the four preconditions of ours, each with its verdict
    assert len(re.findall(r">(?:pass|fail|not evaluable|not testable)</td>", criteria)) == 13 + 4
    for study in CATEGORIES.values():  # each study's key tables start with its criteria and the study verdict
        tables = base64.b64decode(results[f"results/{study}/tables.html"]["data_uri"].split("base64,", 1)[1]).decode()
        assert "Study verdict: " in tables and re.search(r">precondition</td>", tables), study


def test_start_page_lists_each_studys_verdict_and_why(report):
    """The report's start page (report/workflow.rst, rendered into the page) names every study's
    verdict from its criteria.json, with the reason."""
    import json as json_module

    page = report.read_text()
    for category, study in CATEGORIES.items():
        document = json_module.loads((report.parent / study / "criteria.json").read_text())
        assert document["verdict"] in ("held", "not held", "not testable")
        shown = html.escape(f"{category}: {document['verdict']}")
        assert shown in page or json.dumps(shown)[1:-1] in page, f"{category}: verdict not on the start page"


def test_report_renders_in_headless_chromium(report, tmp_path):
    """The report's own JavaScript renders the start page (workflow description, five categories);
    then each study's key-tables entry is opened as a reader would (the app's own view calls) and
    the Re-Basin one is saved as a screenshot, whose verdict cells must show their colours."""
    result = run_chromium("--dump-dom", report.as_uri(), user_data=tmp_path / "profile")
    text = visible_text(result.stdout)
    assert "weightlab runs five weight-space studies" in text, result.stderr[-2000:]
    assert all(category in text for category in CATEGORIES)
    assert "Verdicts of this run:" in text and all(f"{category}: " in text for category in CATEGORIES)

    page = report.read_text()
    for category, study in CATEGORIES.items():
        path = f"results/{study}/tables.html"
        view = tmp_path / f"{study}.html"
        script = (
            "<script>window.addEventListener('load', function () { setTimeout(function () {"
            f" app.setView({{navbarMode: 'subcategory', category: {json.dumps(category)}, subcategory: 'Key tables'}});"
            f" setTimeout(function () {{ app.setView({{content: 'html', contentPath: results[{json.dumps(path)}].data_uri,"
            f" resultPath: {json.dumps(path)}}}); }}, 200); }}, 200); }});</script>"
        )
        head, body_end, tail = page.rpartition("</body>")
        view.write_text(head + script + body_end + tail)
        dom = run_chromium("--dump-dom", view.as_uri(), user_data=tmp_path / "profile").stdout
        assert f"{category} Key tables" in visible_text(dom) and path in visible_text(dom), category
        assert re.search(r'<iframe[^>]+src="data:text/html', dom), f"{category}: the tables entry did not open"
        if study == "rebasin":
            screenshot = report.parent / "report_screenshot.png"
            run_chromium("--window-size=1600,1000", f"--screenshot={screenshot}", view.as_uri(), user_data=tmp_path / "profile")
            import matplotlib.image

            pixels = np.round(matplotlib.image.imread(screenshot)[..., :3] * 255).astype(int)
            coloured = sum(int(np.all(np.abs(pixels - colour) <= 2, axis=-1).sum()) for colour in (PASS_GREEN, FAIL_RED, NOT_TESTABLE_AMBER))
            assert coloured > 2000, "the screenshot shows no verdict cells: the tables page did not render"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            kept = shutil.copy2(screenshot, ARTIFACTS / "report_rebasin_key_tables.png")
            print(f"report screenshot: {kept} ({len(results_in(page))} entries)")

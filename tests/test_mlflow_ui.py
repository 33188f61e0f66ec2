"""The MLflow UI over a tiny run's store, as a browser renders it: `mlflow server` on a free loopback port, headless
Chromium (Debian's `chromium`), and the rendered DOM must show the experiment, the cell runs with their metric
columns and values, and the summary run's report artifacts.

MLflow 3's single-page app opens experiments in its GenAI view by default; `workflowType=machine_learning` in the
hash route's query selects the model-training one, where the runs table lives.
"""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
NO_BROWSER = "no Chromium on PATH (Debian: `apt-get install chromium`): the MLflow UI tests render pages in it"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def browser() -> None:
    """These tests skip without a browser on a contributor's machine, saying how to install one; under CI
    (``$CI`` set, as .ci/run is run), where .ci/run installs it, a missing browser fails them instead."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail(f"{NO_BROWSER}; .ci/run installs it when it runs as root")
        pytest.skip(NO_BROWSER)


ML = "workflowType=machine_learning"  # the classic runs view, not the GenAI one
VIEW = "test-metric-columns"
CELLS = [f"cifar10/tiny_image/{s}/k7" for s in ("feature_extraction", "finetune", "scratch")]


@pytest.fixture(scope="module")
def store(reference_results: Path) -> Path:
    """A results folder written by one real run of the tiny experiment (the suite's reference run)."""
    return reference_results


@pytest.fixture(scope="module")
def truth(store: Path) -> dict:
    """What the store holds, read through MLflow's client: the expectations the pages are checked against."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], max_results=1000)}
    summary = next(r for r in runs.values() if r.data.tags.get("stage") == "summary")
    # The runs table shows attribute columns only, until asked: a shared view (an experiment tag the URL names
    # with viewStateShareKey) asks for metric columns, as the README's screenshots do.
    columns = [f"metrics.`{m}`" for m in ("test_acc_mean", "gain_over_scratch")] + ["tags.`strategy`"]
    client.set_experiment_tag(
        exp.experiment_id, f"mlflow.sharedViewState.{VIEW}", json.dumps({"selectedColumns": columns})
    )
    return {
        "experiment_id": exp.experiment_id,
        "runs": runs,
        "summary": summary,
        "summary_artifacts": {a.path for a in client.list_artifacts(summary.info.run_id)},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` over the store on a free loopback port; its base URL. Killed, with its workers, afterwards."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("ui-server") / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=store,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,  # its own process group: the uvicorn workers go down with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, f"mlflow server exited: {Path(log.name).read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no /health in 90 s: {Path(log.name).read_text()[-3000:]}"
            time.sleep(0.5)
        yield base
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(15)
        log.close()


def dom(url: str, *expected: str, tries: int = 3) -> str:
    """The DOM Chromium has rendered from `url` once the app's scripts ran; loaded again (with more time each try)
    until it holds every `expected` string, so that a slow, loaded machine gets its chances. Returns the last DOM
    either way: the caller asserts."""
    text = ""
    for attempt in range(tries):
        with tempfile.TemporaryDirectory() as profile:
            browser = subprocess.Popen(
                [
                    CHROMIUM,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    "--window-size=1920,1200",
                    f"--virtual-time-budget={15000 * (attempt + 1)}",
                    "--dump-dom",
                    url,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,  # on a timeout, its renderer and other helpers go down with it
            )
            try:
                text, _ = browser.communicate(timeout=60 + 30 * attempt)
            except subprocess.TimeoutExpired:
                os.killpg(browser.pid, signal.SIGKILL)
                browser.communicate()
                continue
        if all(e in text for e in expected):
            break
    return text


def visible_text(page: str) -> str:
    """The page's text, tags dropped and entities decoded, so that an expected name must be on screen, not only in
    an attribute or a script."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "\n", page))


def texts(page: str) -> list[str]:
    """The page's text nodes, in document order."""
    return [t.strip() for t in visible_text(page).splitlines() if t.strip()]


def lines(page: str) -> set[str]:
    return set(texts(page))


def test_experiment_list_shows_the_experiment(ui, truth):
    page = dom(f"{ui}/#/experiments?{ML}", ">tiny<")
    assert "tiny" in lines(page), texts(page)
    assert f'href="#/experiments/{truth["experiment_id"]}' in page  # a link to it


def test_runs_table_shows_the_cell_runs_and_their_metric_columns(ui, truth):
    eid = truth["experiment_id"]
    values = [str(truth["runs"][c].data.metrics["test_acc_mean"]) for c in CELLS]
    page = dom(f"{ui}/#/experiments/{eid}/runs?{ML}&viewStateShareKey={VIEW}", *CELLS, "test_acc_mean", *values)
    shown = lines(page)
    assert set(CELLS) <= shown, sorted(shown)
    assert "tiny/summary" in shown
    assert {"test_acc_mean", "gain_over_scratch"} <= shown, sorted(shown)  # metric column headers
    assert set(values) <= shown, (values, sorted(shown))  # each cell's test_acc_mean, as the table prints it


def test_a_cell_runs_page_shows_its_metrics_and_values(ui, truth):
    run = truth["runs"]["cifar10/tiny_image/finetune/k7"]
    names = ("test_acc_mean", "test_acc_std", "test_macro_f1_mean", "gain_over_scratch")
    # as the page prints them: JavaScript's shortest round-trip repr (0 for 0.0)
    metrics = {m: (lambda v: str(int(v)) if v.is_integer() else str(v))(run.data.metrics[m]) for m in names}
    page = dom(f"{ui}/#/experiments/{truth['experiment_id']}/runs/{run.info.run_id}?{ML}", *metrics.values())
    shown = texts(page)
    pairs = list(itertools.pairwise(shown))
    following = {name: {b for a, b in pairs if a == name} for name in [*metrics, "strategy"]}
    for name, value in metrics.items():
        assert value in following[name], (name, value, following[name])  # the metrics table: name, then its value
    assert ": finetune" in following["strategy"], following["strategy"]  # and its tags
    assert "cifar10/tiny_image/finetune/k7" in shown


def test_the_summary_runs_artifacts_list_the_report(ui, truth):
    logged = truth["summary_artifacts"]
    assert "report.md" in logged
    reports = sorted({"report.md", "report.html"} & logged)  # report.html where the store has one: then it must show
    run_id = truth["summary"].info.run_id
    page = dom(f"{ui}/#/experiments/{truth['experiment_id']}/runs/{run_id}/artifacts?{ML}", *reports)
    shown = lines(page)
    assert set(reports) <= shown, sorted(shown)
    assert "summary.csv" in shown and "confusion_matrix.png" not in shown  # the summary run's own artifacts


def test_the_report_artifact_renders_as_markdown(ui, truth, store):
    title = (store / "tiny" / "report.md").read_text().splitlines()[0].removeprefix("# ")
    assert title == "tiny: transfer against training from scratch"
    run_id = truth["summary"].info.run_id
    page = dom(f"{ui}/#/experiments/{truth['experiment_id']}/runs/{run_id}/artifacts/report.md?{ML}", title)
    heading = re.escape(html.escape(title, quote=False))  # as the DOM serialises its text
    assert re.search(rf"<h1\b[^>]*>\s*{heading}\s*<", page), texts(page)[:100]
    assert re.search(r"<h2\b[^>]*>\s*Verdicts\s*<", page)  # its sections, rendered as headings, not as text


def test_report_html_opens_in_the_artifact_viewer(ui, truth):
    if "report.html" not in truth["summary_artifacts"]:
        pytest.skip("the summary run logged no report.html")
    run_id = truth["summary"].info.run_id
    page = dom(f"{ui}/#/experiments/{truth['experiment_id']}/runs/{run_id}/artifacts/report.html?{ML}", "mlflow-html-")
    frames = re.findall(r"<iframe\b[^>]*>", page)
    assert any('class="mlflow-html-iframe"' in f and 'src="blob:' in f for f in frames), frames or texts(page)[:100]
    assert "report.html" in lines(page)

"""The report as one self-contained HTML page, the experiment's description, and the provenance of the code that
produced the cells (its git commit and lockfile), on constructed records: nothing is trained."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess

import pytest
from conftest import tiny_experiment

from bench import config, environment
from bench.analysis import findings, report, sections, stats
from bench.analysis.report import experiment_note, write_report

ACCURACY = {"scratch": 0.2, "feature_extraction": 0.5, "finetune": 0.4}
CHECKOUT = {"git_commit": "0123456789abcdef0123456789abcdef01234567-dirty", "lockfile": "fedcba9876543210"}
ENVIRONMENT = {
    "platform": "Linux x86_64",
    "cpu": "Some CPU",
    "cores": "2",
    "threads": "1",
    "device": "cpu",
    "python": "3.11.7",
    "torch": "2.14.1",
}


def _records(env: dict[str, str]) -> list[dict]:
    """Constructed cells of one backbone on CIFAR-10 at 5 and 10 examples per class, 3 seeds each."""
    return [
        {
            "modality": "image",
            "dataset": "cifar10",
            "backbone": "mobilenetv2_100",
            "budget": budget,
            "strategy": strategy,
            "best_hp": {"lr": 0.01},
            "cell_key": f"{strategy}-{budget}",
            "trials_complete": 2,
            "trials_pruned": 0,
            "seconds": 1.0,
            "environment": env,
            "seeds": [
                {
                    "seed": s,
                    "test_acc": acc + budget / 100 + 0.01 * s,
                    "test_macro_f1": acc,
                    "train_counts": {str(c): budget for c in range(10)},
                }
                for s in range(3)
            ],
        }
        for budget in (5, 10)
        for strategy, acc in ACCURACY.items()
    ]


def test_report_html_is_one_page_with_the_reports_tables_and_its_plots_inline(results_root):
    report, _ = write_report("constructed", _records(ENVIRONMENT | CHECKOUT))
    text, page = report.read_text(), report.with_suffix(".html").read_text()
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page and "<style>" in page
    assert "http" not in page and "href=" not in page  # nothing to fetch, nowhere to go
    assert page.count("<table>") == text.count("\n|---") > 3
    assert "<th>verdict</th>" in page and "<td>feature_extraction</td>\n<td>best</td>" in page
    assert "more than measured (&gt; 10)" in page  # text that looks like markup is escaped
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    sources = re.findall(r'<img alt="[^"]*" src="([^"]*)"', page)
    assert len(sources) == len(figures) >= 3 and page.count("<img") == len(sources)
    for name, source in zip(figures, sources, strict=True):
        head, _, data = source.partition(",")
        assert head == "data:image/png;base64" and base64.b64decode(data) == (report.parent / name).read_bytes()


def test_the_experiments_description_says_what_ran_the_best_strategies_and_where_the_report_is(results_root):
    exp = config.parse({**tiny_experiment(budgets=[5, 10]), "description": "a constructed study"})
    records = _records(ENVIRONMENT)
    note = experiment_note(exp, records, "constructed/summary")
    assert note.startswith("**tiny**: a constructed study\n")
    for line in (
        "- backbones: tiny_image",
        "- datasets: cifar10",
        "- strategies: feature_extraction, finetune, scratch",
        "- budgets (training examples per class): 5, 10",
        "- 2 seeds and 2 Optuna trials per cell; 6 cells finished",
        "`report.html` in the artifacts of the run `constructed/summary` (`stage=summary`)",
    ):
        assert line in note
    verdicts = stats.verdicts(records)
    best = verdicts[verdicts.verdict == "best"]
    assert best.strategy.tolist() == ["feature_extraction", "feature_extraction"]
    for budget, mean in zip(best.budget, best.acc, strict=True):
        assert (
            f"- cifar10, {budget} examples per class: **feature_extraction**, test accuracy {100 * mean:.1f} " in note
        )


def _git(root, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_git_commit_is_head_dirty_only_with_tracked_changes_else_unknown(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    assert environment.git_commit(repo) == "unknown"  # no repository
    _git(repo, "init", "-q")
    assert environment.git_commit(repo) == "unknown"  # no commit yet
    (repo / "a.txt").write_text("a")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-qm", "first")
    head = _git(repo, "rev-parse", "HEAD")
    assert re.fullmatch("[0-9a-f]{40}", head) and environment.git_commit(repo) == head
    (repo / "untracked.txt").write_text("b")
    assert environment.git_commit(repo) == head  # untracked files are not changes to the code
    (repo / "a.txt").write_text("changed")
    assert environment.git_commit(repo) == f"{head}-dirty"
    assert environment.git_commit(repo / "sub") == "unknown"  # inside a repository, not its top folder
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert environment.git_commit(repo) == "unknown"  # no git


def test_lockfile_digest_is_the_lockfiles_sha256_prefix_or_none(tmp_path):
    assert environment.lockfile_digest(tmp_path) == "none"
    (tmp_path / "requirements.lock").write_bytes(b"torch==2.14.1\n")
    assert environment.lockfile_digest(tmp_path) == hashlib.sha256(b"torch==2.14.1\n").hexdigest()[:16]


def test_describe_records_this_checkouts_commit_and_lockfile():
    info = environment.describe("cpu")
    assert info["git_commit"] == environment.git_commit(environment.REPOSITORY)
    assert info["lockfile"] == environment.lockfile_digest(environment.REPOSITORY)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (ENVIRONMENT | CHECKOUT, f"; git commit {CHECKOUT['git_commit']}, requirements.lock fedcba9876543210"),
        (ENVIRONMENT | CHECKOUT | {"lockfile": "none"}, f"; git commit {CHECKOUT['git_commit']}, no requirements.lock"),
        (ENVIRONMENT, "Python 3.11.7, torch 2.14.1"),  # cells recorded before commits were: the line still reads
    ],
)
def test_summary_line_ends_with_the_commit_and_lockfile_where_recorded(env, expected):
    assert environment.summary_line(env).endswith(expected)


def test_the_report_shows_what_each_strategy_spent_for_its_accuracy(results_root):
    records = _records(ENVIRONMENT)
    for r in records:
        trained = r["strategy"] != "feature_extraction"
        for s in r["seeds"]:  # finetune: 60, 80, 100 steps kept at 20, 40, 60; seconds as many as steps / 10
            steps = (60 + 20 * s["seed"]) if trained else 0
            s |= {"steps": steps, "best_step": max(0, steps - 40), "seconds": steps / 10 + 1}
    report, summary = write_report("constructed", records)
    text = report.read_text()
    assert (report.parent / "accuracy_vs_compute.png").stat().st_size > 10_000
    assert "![accuracy against compute](accuracy_vs_compute.png)" in text
    section = text.split("## Compute")[1].split("## ")[0]
    # per strategy: cells, median steps, median kept step, median seconds per run, minutes of its cells
    assert "| finetune | 2 | 80.0 | 40.0 | 9.0 | 0.0 |" in section
    assert "| feature_extraction | 2 | 0.0 | 0.0 | 1.0 | 0.0 |" in section
    finetune = summary[summary.strategy == "finetune"]
    assert finetune.steps.tolist() == [80.0, 80.0] and finetune.best_step.tolist() == [40.0, 40.0]


def test_the_report_names_strategies_far_below_the_probe_with_the_measured_cause(results_root):
    records = _records(ENVIRONMENT)  # finetune ends 10 points below feature_extraction in both cells
    for r in records:
        for s in r["seeds"]:  # finetune's runs stopped at step 60 of 100 and validated below the probe
            s |= {"val_acc": 0.45, "steps": 100, "best_step": 60} if r["strategy"] == "finetune" else {"val_acc": 0.5}
    text = write_report("constructed", records)[0].read_text()
    section = text.split("## Below the linear probe")[1].split("\n## ")[0]
    assert "| cifar10 | mobilenetv2_100 | 5 | finetune | -10.0 [-10.0, -10.0] | 45.0 (50.0) | 100 | 60 |" in section
    assert section.count("fell after step 60") == 2 and "scratch" not in section  # scratch is not compared here
    lift = {"finetune": 0.08}
    fine = [
        {**r, "seeds": [{**s, "test_acc": s["test_acc"] + lift.get(r["strategy"], 0)} for s in r["seeds"]]}
        for r in records
    ]
    text = write_report("constructed", fine)[0].read_text()  # 2 points below: within the margin
    assert "None: every strategy ends within 5 points of the probe." in text


def test_cells_of_an_earlier_version_have_no_compute_figures(results_root):
    report, summary = write_report("constructed", _records(ENVIRONMENT))
    assert "recorded no seconds" in report.read_text() and not (report.parent / "accuracy_vs_compute.png").exists()
    assert summary.steps.isna().all()


def test_the_report_says_in_its_first_lines_when_cells_validated_outside_their_budget(results_root):
    records = _records(ENVIRONMENT)
    report, summary = write_report("inside", records)
    assert "outside the budget" not in report.read_text() and "## Labels and test examples" in report.read_text()
    for r in records:  # 20 validation examples on top of 10 classes x budget
        for s in r["seeds"]:
            s["n_val"] = 20
    first_lines = write_report("outside", records)[0].read_text().split("\n")[:6]
    assert any("**Validation outside the budget**: 6 of 6 cells" in line for line in first_lines)


def test_the_report_is_its_sections_in_order_and_a_new_section_is_one_function(results_root, monkeypatch):
    def extra(a: findings.Analysis) -> sections.Section:
        def draw(path):
            path.write_bytes(b"png")
            return path

        lines = (f"{len(a.records)} cells", "", "![extra](extra.png)", "")
        return sections.Section("Extra", lines, {"extra.png": draw})

    monkeypatch.setattr(sections, "SECTIONS", [*sections.SECTIONS, extra])
    path, _ = write_report("constructed", _records(ENVIRONMENT))
    text = path.read_text()
    headings = [line for line in text.split("\n") if line.startswith("#")]
    assert headings[0] == "# constructed: transfer against training from scratch"
    assert headings[1:4] == ["## Labels and test examples", "## Verdicts", "## Against the linear probe"]
    assert text.endswith("## Extra\n\n6 cells\n\n![extra](extra.png)\n")
    assert (path.parent / "extra.png").read_bytes() == b"png"
    assert base64.b64encode(b"png").decode() in path.with_suffix(".html").read_text()


def test_the_statistics_are_computed_once_for_the_report_and_the_note(results_root, monkeypatch):
    calls = []
    verdicts = stats.verdicts
    monkeypatch.setattr(stats, "verdicts", lambda *args, **kw: calls.append(1) or verdicts(*args, **kw))
    exp = config.parse(tiny_experiment(budgets=[5, 10]))
    analysis = findings.analyse("constructed", _records(ENVIRONMENT), rope=exp.statistics.rope)
    report.write(analysis)
    note = experiment_note(exp, analysis.records, "constructed/summary", analysis)
    assert len(calls) == 1 and "**feature_extraction**" in note


def test_the_baselines_of_the_report_are_whichever_strategies_have_their_roles(results_root, monkeypatch):
    from bench.strategies import base

    roles = {"scratch": base.Role.STRATEGY, "finetune": base.Role.SCRATCH}  # finetune as the baseline, for once
    monkeypatch.setattr(base, "role_of", lambda name: roles.get(name, base.Role.STRATEGY))
    path, summary = write_report("constructed", _records(ENVIRONMENT))
    rows = summary.set_index(["strategy", "budget"])
    assert rows.loc[("finetune", "5"), "gain_over_scratch"] == 0.0
    assert rows.loc[("scratch", "5"), "scratch_acc_mean"] == rows.loc[("finetune", "5"), "test_acc_mean"]
    baseline = [line for line in path.read_text().split("\n") if "| baseline |" in line]
    assert len(baseline) == 2 and all("| finetune |" in line for line in baseline)
    assert "Against the linear probe" not in path.read_text()  # no strategy has the probe's role here

"""The command line, thin: parse, call, print. Heavy imports (torch, timm, mlflow) happen only where needed."""

from __future__ import annotations

import argparse
import atexit
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table
from rich.text import Text

WORKERS_ENV = "TRANSFERBENCH_WORKERS"
RAY_ENV = "TRANSFERBENCH_RAY"
EXAMPLES = """\
examples:
  bench validate experiments/default.yaml     check a file without running anything
  bench run experiments/smoke.yaml --dry-run  show the cells, trials and training runs it would do
  bench run experiments/default.yaml          run (finished cells are skipped), then print the summary
  bench run experiments/default.yaml --workers 2   the same on two workers (Ctrl-C stops; a rerun resumes)
  bench run experiments/smoke.yaml --ray      each cell a task on a Ray cluster started here
  bench run FILE --ray auto --tracking-uri http://HOST:5000 --optuna-storage postgresql://USER@HOST/optuna
                                              on the running Ray cluster, with stores its nodes reach
                                              (docs/cluster.md)
  bench rank mobilenetv2_100 tf_efficientnet_lite0 --dataset cifar10 --budget 10 --like experiments/transferability.yaml
                                              transferability scores of backbones, training nothing
  bench list backbones                        what can go into an experiment file
  bench doctor                                check that this environment can run a benchmark

Results go to results/<experiment>/ (summary.csv, one JSON per finished cell); MLflow runs to
results/mlflow.db (`make ui`); Optuna studies to results/optuna.db.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench",
        description="transferbench: does transfer beat training from scratch? Backbones x datasets x strategies, "
        "tuned by Optuna under an equal budget, tracked in MLflow.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data-root", help="folder of datasets in their upstream layouts (default: $TRANSFERBENCH_DATA or ./data)"
    )
    p.add_argument("--results", help="where runs write (default: $TRANSFERBENCH_RESULTS or ./results)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("validate", help="check an experiment file and exit (code 2 on errors)").add_argument("file")
    _run_parser(sub.add_parser("run", help="run an experiment file's matrix, skipping finished cells"))
    _report_parser(sub.add_parser("report", help="write results/<experiment>/report.md, plots and summary.csv again"))
    _rank_parser(sub)
    _stability_parser(sub)
    lst = sub.add_parser("list", help="list registered backbones, datasets or strategies")
    lst.add_argument("what", choices=["backbones", "datasets", "strategies"])
    sub.add_parser(
        "doctor",
        help="check that this environment works (`make install` runs it): exit 2 naming each broken package",
        description="Import every package with native code that a run loads, run one small operation of each, and "
        "decode one file of each modality as the datasets are read (from the data root when it holds them). Each "
        "failure is one `error:` line naming the package and the fix; the exit code is then 2.",
    )
    return p


def _run_parser(r: argparse.ArgumentParser) -> None:
    r.add_argument("file")
    r.add_argument("--dry-run", action="store_true", help="print the expanded matrix without training")
    r.add_argument(
        "--workers",
        type=_workers,
        default=os.environ.get(WORKERS_ENV),
        metavar="N",
        help="workers sharing the matrix (default: $TRANSFERBENCH_WORKERS, else 'auto': one per core at "
        "training.threads each, at least 4 cells each). Other `bench run` processes on the same results folder "
        "share it too: every cell and seed is trained once. A run holds the free cores of this machine from its start; "
        "one started while others hold every core waits, at idle priority, until a core frees up",
    )
    r.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=os.environ.get(RAY_ENV),
        metavar="ADDRESS",
        help="run each cell as a task on a Ray cluster: without ADDRESS (or 'local') one started on this machine; "
        "'auto' the one running here; 'ray://HOST:10001' or 'HOST:6379' a remote one (default: $TRANSFERBENCH_RAY, "
        "else the file's cluster.ray, else no Ray)",
    )
    _store_flags(r)
    _sampler_flag(r)


def _report_parser(rep: argparse.ArgumentParser) -> None:
    rep.add_argument(
        "experiment",
        nargs="?",
        default="experiments/default.yaml",
        help="an experiment file, or the name of one in experiments/ (default: %(default)s)",
    )
    _store_flags(rep)
    _sampler_flag(rep)


def _rank_parser(sub: argparse._SubParsersAction) -> None:
    rk = sub.add_parser(
        "rank",
        help="score pretrained backbones on a dataset from frozen features alone, training nothing "
        "(LogME, LEEP, NCE, H-score)",
        description="Rank backbones by transferability scores computed on the frozen features of a training "
        "split (never the test split): LogME (You et al. 2021), LEEP (Nguyen et al. 2020) and NCE (Tran et al. "
        "2019) from the backbone's source classifier where it has one, H-score (Bao et al. 2019) and its "
        "shrinkage-regularised form (Ibrahim et al. 2022), which still tells backbones apart with fewer examples "
        "than feature dimensions. Backbones are listed best first by LogME. Features are "
        "cached, so a second ranking takes seconds. The report of a benchmark sets the same scores against the "
        "accuracies its strategies reached.",
    )
    rk.add_argument("backbones", nargs="+", metavar="BACKBONE", help="registered backbones (`bench list backbones`)")
    rk.add_argument("--dataset", required=True, help="a registered dataset (`bench list datasets`)")
    rk.add_argument("--budget", default="10", help="training examples per class, or 'all' (default: %(default)s)")
    rk.add_argument("--seeds", type=int, default=3, help="splits scored, as a benchmark's seeds (default: %(default)s)")
    rk.add_argument(
        "--like",
        metavar="FILE",
        help="take backbone options (input_size, max_length, ...), split sizes, batch size and device from this "
        "experiment file, so the scores are those its report shows (default: each backbone's own input size)",
    )


def _stability_parser(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser(
        "stability",
        help="compare two runs of one experiment, cell by cell and verdict by verdict",
        description="How much an experiment's answers depend on its draws: run it again with another sampler seed "
        "into another results folder, then compare. A cell holds when the second run's mean test accuracy lies in "
        "the first run's interval; a verdict (a strategy against the best of its dataset and budget: best, worse, "
        "equivalent or undecided) holds when both runs give it, or one calls the strategy the best and the other "
        "does not call it worse.",
        epilog="example:\n  bench run experiments/default.yaml\n"
        "  bench --results results/resampled run experiments/default.yaml --sampler-seed 1\n"
        "  bench stability results/default results/resampled/default",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("first", help="a run's folder, <results>/<experiment> (its cells/ hold the finished cells)")
    st.add_argument("second", help="the other run's folder")
    st.add_argument(
        "--rope",
        type=float,
        default=0.01,
        help="region of practical equivalence of the verdicts, in accuracy (default: %(default)s, as the "
        "experiment's statistics.rope)",
    )
    st.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default: %(default)s)")


def _store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking store, e.g. http://HOST:5000 (default: the file's tracking_uri, else "
        "$MLFLOW_TRACKING_URI, else sqlite in the results folder)",
    )
    p.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="Optuna storage, e.g. postgresql://USER@HOST/optuna (default: the file's optuna_storage, else "
        "$TRANSFERBENCH_OPTUNA_STORAGE, else sqlite in the results folder)",
    )


def _sampler_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sampler-seed",
        type=int,
        metavar="N",
        help="seed of every study's sampler instead of the file's tuning.sampler_seed: the same experiment with "
        "other draws, to measure how much its answers depend on them (`bench stability`); give it to `report` too",
    )


def _with_flags(exp, args: argparse.Namespace):
    """The experiment with the stores, sampler seed and Ray address that the command line sets instead of the file."""
    from bench.config import ConfigError, check_ray_address

    stores = {"tracking_uri": args.tracking_uri, "optuna_storage": args.optuna_storage}
    exp = exp.model_copy(update={k: v for k, v in stores.items() if v})
    if getattr(args, "sampler_seed", None) is not None:
        if args.sampler_seed < 0:
            raise ConfigError(f"--sampler-seed: expected a seed of 0 or more, got {args.sampler_seed}")
        exp = exp.model_copy(update={"tuning": exp.tuning.model_copy(update={"sampler_seed": args.sampler_seed})})
    if getattr(args, "ray", None):
        try:
            address = check_ray_address(args.ray)
        except ValueError as e:
            raise ConfigError(f"--ray: {e}") from None
        exp = exp.model_copy(update={"cluster": exp.cluster.model_copy(update={"ray": address})})
    return exp


def _workers(text: str | None) -> int | None:
    if text in (None, "", "auto"):
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of workers (1, 2, ...) or 'auto', got {text!r}")
    return n


def _dry_run(exp, console: Console) -> None:
    from bench import results
    from bench.matrix import expand

    cells = expand(exp)
    table = Table(title=f"{exp.name}: {len(cells)} cells")
    for col in ("#", "cell", "modality", "key", "status"):
        table.add_column(col, overflow="fold")
    todo = []
    for i, cell in enumerate(cells, 1):
        done = results.is_finished(exp.name, cell)
        if not done:
            todo.append(cell)
        table.add_row(str(i), cell.run_name, cell.modality, cell.key, "finished" if done else "to run")
    console.print(table)
    finished = len(cells) - len(todo)
    trials = exp.tuning.n_trials * sum(_tunes(c, exp) for c in todo)
    console.print(
        f"{len(cells)} cells ({finished} finished, {len(todo)} to run): {trials} Optuna trials and "
        f"{trials + len(todo) * exp.seeds.min} training runs of {_length(exp.training)} "
        f"({exp.tuning.n_trials} trials in cells with a hold-out + {exp.seeds.min} final seeds per cell; linear probes "
        "are solved, not stepped)"
        + (
            f"; then up to {exp.seeds.most} seeds for the cells of a contest still undecided (racing)"
            if exp.seeds.races
            else ""
        )
        + "".join(
            f"; {ds.name}: {', '.join(f'{k} {v}' for k, v in ds.training.items())}"
            for ds in exp.datasets
            if ds.training
        )
    )


def _tunes(cell, exp) -> bool:
    """Whether a cell runs an Optuna study: it holds validation examples out (a budget with a hold-out, a strategy
    that validates)."""
    from bench.data.splits import holdout_per_class
    from bench.strategies import STRATEGIES

    if not STRATEGIES.get(cell.strategy).holds_out:
        return False
    if exp.splits.extra_val_per_class or cell.budget == "all":
        return True
    return holdout_per_class(int(cell.budget), exp.splits.val_fraction, exp.splits.min_val_per_class) > 0


def _seeds(exp) -> str:
    """``3`` or ``3-10`` (racing)."""
    return f"{exp.seeds.min}-{exp.seeds.most}" if exp.seeds.races else str(exp.seeds.min)


def _length(training) -> str:
    """How long each training run lasts, in the experiment's own terms."""
    if training.steps is not None:
        length = f"{training.steps} optimiser steps"
    else:
        at_least = f", at least {training.min_steps}" if training.min_steps else ""
        at_most = f", at most {training.max_steps}" if training.max_steps else ""
        bounds = f"{at_least}{at_most} optimiser steps" if at_least or at_most else ""
        length = f"{training.epochs} epochs{bounds}"
    if training.patience is None:
        return length
    return (
        f"at most {length}, stopping after {training.patience} validations past the warm-up without a better "
        f"{'validation loss' if training.monitor == 'val_loss' else 'validation accuracy'} (once the run has beaten "
        "its starting weights)"
    )


def _list(what: str, console: Console) -> None:
    from bench import backbones, data, strategies

    if what == "backbones":
        table = Table("name", "modality", "source", "feature dim", "offline")
        for name, spec in backbones.BACKBONES:
            table.add_row(name, spec.modality, spec.source, str(spec.feature_dim), "yes" if spec.available() else "no")
        console.print(table)
        console.print(
            "Hub models work too: 'timm:<model>' (images), 'hf:<model id>' (text), 'hf-audio:<model id>' (audio), "
            "from the hub when online or from a local `weights:` file or folder."
        )
    elif what == "datasets":
        table = Table("name", "modality", "classes", "source", "offline")
        for name, spec in data.DATASETS:
            table.add_row(
                name, spec.modality, str(spec.num_classes), spec.upstream, "yes" if spec.available() else "no"
            )
        console.print(table)
    else:
        caption = "tuning.first_trial: defaults starts each study from the defaults; a fixed value is never tuned"
        table = Table("name", "pretrained", "description", "default", "source of the default", caption=caption)
        table.columns[3].no_wrap = True
        for name, cls in strategies.STRATEGIES:
            declared = {k: h for k, h in cls.hyperparameters.items() if h is not None}
            rows = []  # each default with its source: the declared ones in order, then a plugin's own
            for key in [*declared, *(k for k in cls.defaults if k not in declared)]:
                h = declared.get(key)
                if h is not None and not h.tuned:
                    rows.append((f"{key}={h.default:g} (fixed)", h.source))
                elif key in cls.defaults:
                    value = cls.defaults[key]
                    shown = f"{key}={value:g}" if isinstance(value, int | float) else f"{key}={value}"
                    rows.append((shown, h.source if h is not None and value == h.default else "the class's defaults"))
            for i, row in enumerate(rows or [("nothing to tune", "")]):
                first = (name, "yes" if cls.pretrained else "no", cls.description) if i == 0 else ("", "", "")
                table.add_row(*first, *row, end_section=i == max(len(rows), 1) - 1)
        console.print(table)


def _experiment_file(name: str) -> str:
    """A path as given, or ``experiments/<name>.yaml`` for a bare experiment name."""
    return name if name.endswith((".yaml", ".yml")) or os.sep in name else f"experiments/{name}.yaml"


def _report(exp, stores, console: Console) -> int:
    """Write the report of ``exp``'s finished cells, log it to the MLflow store of ``stores`` (the summary run's
    artifacts, each cell's comparison metrics, the experiment's description) and print the summary table."""
    from bench import paths, results
    from bench.analysis import transferability_scores
    from bench.analysis.findings import analyse
    from bench.analysis.report import experiment_note, print_summary, write
    from bench.matrix import expand
    from bench.tracking import Tracker, browse_hint

    records = [r for r in (results.load_cell(exp.name, c) for c in expand(exp)) if r is not None]
    if not records:
        console.print(f"no finished cells for '{exp.name}' yet: `bench run` first")
        return 1
    with paths.file_lock(paths.experiment_dir(exp.name) / ".report.lock"):  # runs sharing a matrix report in turn
        rows = _transfer_scores(exp, console)
        seconds = sum(r["seconds"] for r in records)
        analysis = analyse(exp.name, records, seconds, rows, exp.statistics.rope, exp.statistics.confidence)
        report, summary = write(analysis), analysis.summary
        page = report.with_suffix(".html")
        tables = [report.parent / name for name in ("summary.csv", "verdicts.csv", "gains.csv", "probe.csv")]
        files = sorted(report.parent.glob("*.png")) + [report, page, *tables]
        tracker = Tracker(stores.tracking, exp.name)
        tracker.log_comparisons(summary)
        if rows is not None and len(rows):
            tracker.log_transferability(transferability_scores.per_backbone(rows), transferability_scores.SCORES)
            files.append(report.parent / transferability_scores.FILE)
        summary_run = tracker.log_report(exp.name, files)
        tracker.set_description(experiment_note(exp, records, summary_run, analysis))
    print_summary(summary, console, f"{exp.name}: test accuracy over {_seeds(exp)} seeds")
    runs = browse_hint(stores.tracking)
    console.print(Text(f"report: {report} and {page.name}   summary: {report.parent / 'summary.csv'}   runs: {runs}"))
    return 0


def _stability(first: Path, second: Path, console: Console, rope: float, confidence: float) -> int:
    """Print how many cells and verdicts of ``second`` hold against ``first``, and the ones that do not."""
    from bench.analysis import stability
    from bench.config import ConfigError

    try:
        found = stability.compare(stability.records_in(first), stability.records_in(second), rope, confidence)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    cells, verdicts = found.cells, found.verdicts
    if not len(cells):
        console.print(f"{first} and {second} share no finished cell: nothing to compare")
        return 1
    moved = cells[~cells.holds]
    console.print(
        f"{int(cells.holds.sum())} of {len(cells)} cells ({100 * found.cells_holding:.0f} %) hold: the second run's "
        f"mean lies in the first run's interval; {int(verdicts.holds.sum())} of {len(verdicts)} verdicts hold "
        f"({int((verdicts['first'] == verdicts['second']).sum())} the same word)"
    )
    if len(moved):
        table = Table("dataset", "backbone", "budget", "strategy", "first % [95 % CI]", "second %", "moved (pts)")
        for r in moved.itertuples():
            interval = f"{100 * r.acc_first:.1f} [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]"
            table.add_row(
                r.dataset,
                r.backbone,
                str(r.budget),
                r.strategy,
                interval,
                f"{100 * r.acc_second:.1f}",
                f"{100 * r.moved:+.1f}",
            )
        console.print(table)
    changed = verdicts[~verdicts.holds]
    if len(changed):
        table = Table("dataset", "budget", "strategy", "first run", "second run")
        for r in changed.itertuples():
            table.add_row(r.dataset, str(r.budget), r.strategy, r.first, r.second)
        console.print(table)
    return 0


def _transfer_scores(exp, console: Console):
    """The experiment's transferability rows (computed where missing), or None with a warning when a dataset or
    backbone they need is not here, or a backbone's features cannot be scored: the rest of the report does not
    need them."""
    from bench.analysis import transferability_scores
    from bench.data import DatasetMissingError

    try:
        with console.status("transferability scores") as status:
            return transferability_scores.score_experiment(exp, say=status.update)
    except (DatasetMissingError, FileNotFoundError, ValueError) as e:
        console.print(Text(f"warning: no transferability scores in the report: {e}", style="yellow"))
        return None


def _rank_experiment(args: argparse.Namespace):
    """The experiment `bench rank` scores: the named backbones on one dataset and budget, the rest from --like."""
    from bench import config, strategies

    base = config.load(args.like).model_dump(mode="json", exclude_none=True) if args.like else {}
    options = {bb["name"]: bb for bb in base.get("backbones", [])}
    budget = args.budget if args.budget == "all" else _number(args.budget, "--budget")
    spec = {
        **{k: v for k, v in base.items() if k in ("training", "splits")},
        "name": "rank",
        "backbones": [options.get(name, {"name": name}) for name in args.backbones],
        "datasets": [args.dataset],
        "strategies": [strategies.with_role(strategies.Role.PROBE)],
        "budgets": [budget],
        "seeds": args.seeds,
    }
    from bench import backbones, data
    from bench.registry import UnknownNameError

    try:
        modality = data.DATASETS.get(args.dataset).modality
        other = [name for name in args.backbones if backbones.resolve(name).modality != modality]
    except UnknownNameError:
        other = []  # named in the experiment's own error below
    if other:
        raise config.ConfigError(f"bench rank: {', '.join(other)} cannot read {modality} data ({args.dataset})")
    return config.parse(spec, "bench rank")


def _number(text: str, flag: str) -> int:
    from bench.config import ConfigError

    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} {text[:50]!r}: expected a number of examples per class, or 'all'") from None


def _rank(exp, console: Console) -> int:
    """Score the experiment's backbones on its dataset and budget and print them best first (by LogME)."""
    from bench import paths
    from bench.analysis import transferability_scores

    with console.status("scoring") as status:
        rows = transferability_scores.score_groups(
            exp, [(bb, exp.datasets[0].name, exp.budgets[0]) for bb in exp.backbones], say=status.update
        )
    ranked = transferability_scores.per_backbone(rows).sort_values("logme", ascending=False, na_position="last")
    table = Table(
        title=f"{exp.datasets[0].name}, {exp.budgets[0]} examples per class: transferability over {exp.seeds.min} "
        "splits (mean ± std; higher predicts better transfer)"
    )
    for col in ("rank", "backbone", *transferability_scores.SCORES):
        table.add_column(col, justify="left" if col == "backbone" else "right")
    for i, row in enumerate(ranked.itertuples(), 1):
        table.add_row(
            str(i),
            row.backbone,
            *(_mean_std(getattr(row, s), getattr(row, f"{s}_std")) for s in transferability_scores.SCORES),
        )
    console.print(table)
    for why in sorted(set(rows.skipped.dropna()) - {""}):
        console.print(Text(f"not computed: {why}", style="dim"))
    n = rows.n_train.iloc[0] if len(rows) else 0
    console.print(
        Text(
            f"{n} training examples per split, features of the frozen backbones (cached under "
            f"{paths.cache_dir('features')}); validation and test examples are not read"
        )
    )
    return 0


def _mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def entry() -> NoReturn:
    """The `bench` command: ``main``, then the exit handlers and a flush, as ``sys.exit`` would do, and then an exit
    that skips tearing down the loaded modules (about 2 s with torch, MLflow and matplotlib loaded, which the
    operating system frees at once anyway). While a thread that is no daemon runs, the ordinary exit waits for it."""
    code = main()
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass
class _Command:
    """What a command's handler gets: the parsed arguments, where to print, whether this run waits for a core, and
    the experiment a run works on once it is loaded (an interrupt says how far it got)."""

    args: argparse.Namespace
    console: Console
    err: Console
    busy: bool = False
    exp: Any = None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough that tables are not squeezed
        console = Console(width=160)
    command = _Command(args, console, Console(stderr=True, soft_wrap=True))
    err = command.err
    if args.data_root:
        if not os.path.isdir(args.data_root):
            _error(
                err,
                f"--data-root {args.data_root[:200]}: no such folder; give the folder that holds one sub-folder "
                "per dataset (see the README, Data root)",
            )
            return 2
        os.environ["TRANSFERBENCH_DATA"] = args.data_root
    if args.results:
        os.environ["TRANSFERBENCH_RESULTS"] = args.results

    command.busy = args.command == "run" and not args.dry_run and _reserve_cores()  # before the imports: they cost CPU
    from bench import errors  # the standard library only: it explains the failure of the imports below

    try:
        from bench import config
        from bench.data import DatasetMissingError
    except Exception as e:
        if (broken := errors.environment(e)) is None:
            raise
        _error(err, broken)
        return 2
    try:
        return COMMANDS[args.command](command)
    except (config.ConfigError, DatasetMissingError, FileNotFoundError) as e:
        _error(err, str(e))
        return 2
    except KeyboardInterrupt as stop:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C while cleaning up stops at once
        what = "terminated" if isinstance(stop, Terminated) else "interrupted"
        err.print(
            f"{what}: {_finished(command.exp)} finished and kept, with the finished seeds of the others; open MLflow "
            f"runs were ended as KILLED; `bench run {args.file}` resumes where this stopped",
            highlight=False,
            markup=False,
        )
        return 143 if isinstance(stop, Terminated) else 130
    except Exception as e:
        if (broken := errors.environment(e)) is not None:
            _error(err, broken)
            return 2
        from bench.execution import WorkerError
        from bench.stores import StoreError

        message = str(e) if isinstance(e, WorkerError | StoreError) else errors.explain(e)
        if message is None:
            raise  # not the user's to fix: show where it happened
        _error(err, message)
        return 1
    finally:
        from bench import core_locks

        core_locks.keep(0)  # whatever stopped the run: no core stays held for workers that never came


def _list_command(command: _Command) -> int:
    _list(command.args.what, command.console)
    return 0


def _doctor_command(command: _Command) -> int:
    from bench import doctor

    with command.console.status("checking the environment") as status:
        problems = doctor.check(command.console.print, lambda what: status.update(f"checking {what}"))
    for problem in problems:
        _error(command.err, problem)
    return 2 if problems else 0


def _rank_command(command: _Command) -> int:
    return _rank(_rank_experiment(command.args), command.console)


def _stability_command(command: _Command) -> int:
    args = command.args
    return _stability(Path(args.first), Path(args.second), command.console, args.rope, args.confidence)


def _report_command(command: _Command) -> int:
    from bench import config, preflight, stores

    exp = _with_flags(config.load(_experiment_file(command.args.experiment)), command.args)
    where = stores.resolve(exp)
    preflight.check(exp, where, training=False)
    return _report(exp, where, command.console)


def _validate_command(command: _Command) -> int:
    from bench import config, preflight, stores

    exp = config.load(command.args.file)
    preflight.check(exp, stores.resolve(exp))
    command.console.print(f"{command.args.file}: valid experiment '{exp.name}'")
    return 0


def _run_command(command: _Command) -> int:
    from bench import config, preflight, stores

    args, console = command.args, command.console
    exp = command.exp = _with_flags(config.load(args.file), args)
    where = stores.resolve(exp)
    preflight.check(exp, where)  # before anything is written
    if args.dry_run:
        _warn_missing_datasets(exp, command.err)
        _dry_run(exp, console)
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _interrupt)
    busy = command.busy
    if busy and not exp.cluster.ray:
        busy = _wait_for_a_core(console)
    from bench.matrix import expand
    from bench.runner import run_experiment

    records = run_experiment(exp, where, console, args.workers or (1 if busy else None), exp.cluster.ray)
    if not records:
        return 1
    code = _report(exp, where, console)
    return 1 if len(records) < len(expand(exp)) else code  # a cell failed: its message says what to change


COMMANDS = {
    "list": _list_command,
    "doctor": _doctor_command,
    "rank": _rank_command,
    "stability": _stability_command,
    "report": _report_command,
    "validate": _validate_command,
    "run": _run_command,
}


def _error(err: Console, message: str) -> None:
    """``error: <problem>``, one line per problem, printed as it is (brackets in it are text, not markup)."""
    for line in message.strip().splitlines() or [message]:
        err.print(Text.assemble(("error:", "bold red"), " ", line), highlight=False)


def _reserve_cores() -> bool:
    """A run holds every free core of this machine from its first instant, before its start-up, and hands them to
    its workers. One started while other transferbench processes hold every core runs at idle CPU priority
    (Linux's SCHED_IDLE, else nice 19) until it holds a core, so its start-up takes only time the others leave
    idle. True when that is so."""
    from bench import core_locks, faults

    if core_locks.reserve():
        faults.point("run.cores_held")
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    return True


def _wait_for_a_core(console: Console) -> bool:
    """Wait, before loading data or opening stores, until a core of this machine is free, and hold the free ones:
    a second run then never slows the runs already going. True while other processes still hold some cores: the
    run then takes the cells nobody has taken with one worker (none, when it shares the matrix of a run that kept
    every core busy to its end)."""
    from bench import core_locks, environment, faults

    console.print(
        "every core of this machine trains for another transferbench process: this run waits at idle CPU priority "
        "and starts when a core frees up (Ctrl-C stops it; nothing is lost)"
    )
    while True:
        core_locks.wait_for_free()
        if held := core_locks.reserve():
            _normal_priority()  # its cores are its own now: it trains at the priority of any other run
            faults.point("run.cores_held")
            return held < environment.available_cores()


def _normal_priority() -> None:
    """Back from SCHED_IDLE to Linux's normal scheduling (allowed unprivileged); after the fallback, nice 19, an
    unprivileged process cannot lower its niceness again and stays there."""
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def _warn_missing_datasets(exp, err: Console) -> None:
    """A dataset that is not in the data root has other cell keys until it is there: say so."""
    from bench import data, paths

    for ds in exp.datasets:
        if not data.DATASETS.get(ds.name).available():
            err.print(
                Text(
                    f"warning: dataset '{ds.name}' is not in the data root {paths.data_root()}: `bench run` downloads "
                    "it when online (set --data-root or $TRANSFERBENCH_DATA if it is elsewhere); until it is there, "
                    "its cells cannot be matched with finished ones",
                    style="yellow",
                )
            )


def _finished(exp) -> str:
    """'N of M cells' of the interrupted experiment are finished."""
    if exp is None:
        return "cells"
    from bench import results
    from bench.matrix import expand

    cells = expand(exp)
    done = sum(results.is_finished(exp.name, c) for c in cells)
    return f"{done} of {len(cells)} cells"


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: runs end as KILLED and a rerun resumes."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _interrupt(signum: int, frame: object) -> None:
    """The first Ctrl-C stops cleanly (runs end KILLED); a second one, while that happens, stops at once."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    raise KeyboardInterrupt


if __name__ == "__main__":
    entry()

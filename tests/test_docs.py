"""Every link, path and command in README.md, docs/*.md and results/README.md resolves.

- a relative link or image names a file of the repository, and an ``#anchor`` a heading of that file (GitHub's
  slugs); an absolute link is checked for its form only;
- a repository path in backticks (``bench/loop.py``, ``results/reference/summary.csv``) exists, or is one a run
  writes (git ignores it);
- a command in a code block resolves: ``make <target>`` names a Makefile target, ``bench <subcommand>`` (also
  ``.venv/bin/bench``, ``uv run bench``, ``python -m bench``) a subcommand of bench's parser and each ``--option``
  one of that subcommand, a script path a file, an ``experiments/<x>.yaml`` argument an experiment file.

Each problem is reported as ``file:line: what does not resolve``.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
import subprocess
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from bench.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]

FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(
    r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^()\s<>]*(?:\([^()\s]*\))?[^()\s<>]*)>?(?:\s+\"[^\"]*\")?\s*\)"
)
AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
EXPERIMENT_ARG = re.compile(r"^experiments/[\w.-]+\.ya?ml$")
# a span that could be a path: no spaces, no placeholders (<experiment>, *.png, {0,1,2}), no URL or option
PATH_LIKE = re.compile(r"^\.?[\w.-]+(?:/[\w.@+-]+)*/?$")
SHELL_FENCES = {"bash", "sh", "shell", "console", "zsh"}
PLAIN_FENCES = {"", "text"}
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;", "|&", "((", "))"}


@dataclass(frozen=True)
class Doc:
    path: Path
    prose: str  # the text with fenced blocks blanked, line numbers kept
    blocks: tuple[tuple[int, str, tuple[str, ...]], ...]  # (first line, info string, lines) of each fenced block

    def where(self, offset: int) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.prose.count(chr(10), 0, offset) + 1}"

    def at(self, line: int) -> str:
        return f"{self.path.relative_to(ROOT)}:{line}"


@cache
def _doc(path: Path) -> Doc:
    return parse(path, path.read_text(encoding="utf-8"))


def parse(path: Path, text: str) -> Doc:
    """A page's prose and code blocks; ``path`` is where it lies, for relative links and messages."""
    lines = text.split("\n")
    prose, blocks, fence, info, start, body = [], [], None, "", 0, []
    for number, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence, info, start, body = m.group(1), m.group(2).lower(), number + 1, []
            prose.append("")
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append((start, info, tuple(body)))
            fence = None
            prose.append("")
        elif fence is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    assert fence is None, f"{path.relative_to(ROOT)}:{start - 1}: a code block is never closed"
    return Doc(path, "\n".join(prose), tuple(blocks))


def _without_code(prose: str) -> str:
    """The prose with inline code spans blanked (same length), so that links inside code are not links."""
    return CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lowercased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_(.+?)_(?!\w)", r"\1", text)  # _emphasis_
    keep = "".join(c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return keep.replace(" ", "-")


def anchors(doc: Doc) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in doc.prose.split("\n"):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def _check_target(doc: Doc, target: str) -> str | None:
    """Why a link's target does not resolve, or None."""
    parsed = urlparse(target)
    if parsed.scheme in ("http", "https"):
        well_formed = bool(parsed.netloc) and ("." in parsed.netloc or parsed.hostname == "localhost")
        return None if well_formed and not re.search(r"\s", target) else "malformed URL"
    if parsed.scheme == "mailto":
        return None if "@" in parsed.path else "malformed mailto link"
    if parsed.scheme:
        return f"unexpected scheme {parsed.scheme!r}"
    path_part, _, anchor = target.partition("#")
    file = (doc.path.parent / unquote(path_part)).resolve() if path_part else doc.path
    if not file.is_relative_to(ROOT):
        return "points outside the repository"
    if path_part and not file.exists():
        return "no such file"
    if anchor:
        if file.suffix != ".md" or file.is_dir():
            return f"#{anchor} on a file that is not markdown"
        known = anchors(doc) if file == doc.path else anchors(_doc(file))
        if unquote(anchor) not in known:
            near = difflib.get_close_matches(anchor, known, n=1)
            return f"no heading #{anchor} in {file.relative_to(ROOT)}" + (
                f" (did you mean #{near[0]}?)" if near else ""
            )
    return None


def link_problems(doc: Doc) -> list[str]:
    text = _without_code(doc.prose)
    problems = []
    found = [(m.start(), m.group(2)) for m in LINK.finditer(text)]
    found += [(m.start(), m.group(1)) for m in AUTOLINK.finditer(text)]
    found += [(m.start(), m.group(1)) for m in REFERENCE_DEF.finditer(text)]
    for offset, target in sorted(found):
        why = "empty link" if not target else _check_target(doc, target)
        if why:
            problems.append(f"{doc.where(offset)}: link {target!r} does not resolve: {why}")
    return problems


@cache
def _top_level() -> frozenset[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return frozenset(line.split("/")[0] for line in tracked.splitlines()) | {".venv", "data", "results"}


def _ignored(paths: list[str]) -> set[str]:
    """The paths git ignores: those a run or the install writes (results/..., .venv/...), not the repository's."""
    if not paths:
        return set()
    out = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(form for p in paths for form in (p, p + "/")),  # "/data/" matches only "data/"
        capture_output=True,
        text=True,
    )
    return {line.rstrip("/") for line in out.stdout.splitlines()}


def repository_paths(doc: Doc) -> list[tuple[str, str]]:
    """(file:line, path) of each code span that names a path in this repository."""
    found = []
    for m in CODE_SPAN.finditer(doc.prose):
        span = m.group(2).strip()
        if "/" not in span or not PATH_LIKE.match(span) or span.startswith("../"):
            continue
        path = span.removeprefix("./")
        if path.split("/")[0] in _top_level():
            found.append((doc.where(m.start()), path.rstrip("/")))
    return found


def path_problems(doc: Doc) -> list[str]:
    missing = [(where, p) for where, p in repository_paths(doc) if not (ROOT / p).exists()]
    written_by_runs = _ignored([p for _, p in missing])
    return [f"{where}: path `{p}` does not exist" for where, p in missing if p not in written_by_runs]


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set()
    for m in re.finditer(r"^([^\s#=:$][^=:#]*?)\s*::?(?!=)", text, re.M):
        targets.update(m.group(1).split())
    return frozenset(targets)


@cache
def bench_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def _check_bench(args: list[str]) -> list[str]:
    """Why a `bench` command line does not resolve: its subcommand, and each option before and after it."""
    main, subcommands = bench_parser()
    problems, i, options = [], 0, _options(main)
    while i < len(args) and args[i].startswith("-"):
        name = args[i].split("=")[0]
        if name not in options:
            problems.append(f"bench has no option {name}")
        elif "=" not in args[i] and options[name].nargs != 0:
            i += 1
        i += 1
    if i >= len(args):
        return problems + ["bench without a subcommand"]
    command = args[i].strip("[]")
    if command not in subcommands:
        near = difflib.get_close_matches(command, subcommands, n=1)
        return problems + [f"bench has no subcommand {command!r}" + (f" (did you mean {near[0]!r}?)" if near else "")]
    sub = subcommands[command]
    options = _options(sub)
    positionals = [a for a in sub._actions if not a.option_strings]
    for token in args[i + 1 :]:
        for word in token.split("|"):
            word = word.strip("[]")
            if word.startswith("-") and len(word) > 1:
                name = word.split("=")[0]
                if name not in options:
                    near = difflib.get_close_matches(name, options, n=1)
                    hint = f" (did you mean {near[0]}?)" if near else ""
                    problems.append(f"`bench {command}` has no option {name}{hint}")
    first = next((t for t in args[i + 1 :] if not t.startswith("-")), None)
    if first and positionals and positionals[0].choices and not first.isupper():
        for word in first.strip("[]").split("|"):
            if word not in positionals[0].choices:
                problems.append(
                    f"`bench {command}` does not take {word!r} (choices: {', '.join(positionals[0].choices)})"
                )
    return problems


def _words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: read it word by word
        return line.split()


def _simple_commands(line: str) -> list[list[str]]:
    commands, current = [], []
    for word in _words(line):
        if word in SEPARATORS or set(word) <= set(";&|()"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    return [c for c in commands + [current] if c]


def _is_script(word: str) -> bool:
    """A script of this repository (docs/cluster_local.sh, benchmarks/harness.py, .ci/run)."""
    in_repository = word.removeprefix("./").split("/")[0] in _top_level()
    return in_repository and "/" in word and (word.endswith((".sh", ".py")) or word.startswith(".ci/"))


def check_command(words: list[str], shell: bool) -> list[str]:
    """Why one simple command does not resolve. Outside shell blocks only make and bench lines count as commands."""
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words = words[1:]
    if not words:
        return []
    program, args = words[0], words[1:]
    if program == "uv" and args[:2] == ["run", "bench"]:
        program, args = "bench", args[2:]
    if (program == "python" or re.match(r"^(\.venv/bin/)?python[\d.]*$", program)) and args[:2] == ["-m", "bench"]:
        program, args = "bench", args[2:]
    problems = []
    if program == "make":
        for target in (a for a in args if not a.startswith("-") and "=" not in a):
            if target not in make_targets():
                near = difflib.get_close_matches(target, make_targets(), n=1)
                problems.append(f"make has no target {target!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    elif program == "bench" or program.endswith("/bench") and not program.startswith("$"):
        problems += _check_bench(args)
    elif re.match(r"^(\.venv/bin/)?python[\d.]*$", program) and args and _is_script(args[0]):
        if not (ROOT / args[0]).is_file():
            problems.append(f"no script {args[0]}")
    elif shell or _is_script(program):
        if _is_script(program) and not (ROOT / program.removeprefix("./")).is_file():
            problems.append(f"no script {program}")
    else:
        return []
    for arg in args:
        if EXPERIMENT_ARG.match(arg) and not (ROOT / arg).is_file():
            problems.append(f"no experiment file {arg}")
    return problems


def commands(doc: Doc) -> list[tuple[str, list[str], bool]]:
    """(file:line, words, from a shell block) of each command: lines of code blocks, and inline code that starts
    with a command."""
    found = []
    for start, info, lines in doc.blocks:
        if info not in SHELL_FENCES | PLAIN_FENCES:
            continue
        joined, first = "", None
        for number, line in enumerate(lines, start):
            first = number if first is None else first
            if line.endswith("\\"):
                joined += line[:-1] + " "
                continue
            joined += line
            text = re.sub(r"^\s*\$ ", "", joined)
            found += [(doc.at(first), words, info in SHELL_FENCES) for words in _simple_commands(text)]
            joined, first = "", None
    for m in CODE_SPAN.finditer(doc.prose):
        span = " ".join(m.group(2).split())
        command = re.match(r"^(make|bench|\.venv/bin/bench|uv run bench|python -m bench) ", span)
        if command or (" " in span and _is_script(span.split(" ")[0])):
            found += [(doc.where(m.start()), words, False) for words in _simple_commands(span)]
    return found


def command_problems(doc: Doc) -> list[str]:
    problems = []
    for where, words, shell in commands(doc):
        problems += [f"{where}: `{' '.join(words)}`: {why}" for why in check_command(words, shell)]
    return problems


PAGES = pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))


@PAGES
def test_links_resolve(path: Path) -> None:
    problems = link_problems(_doc(path))
    assert not problems, "\n".join(problems)


@PAGES
def test_paths_exist(path: Path) -> None:
    problems = path_problems(_doc(path))
    assert not problems, "\n".join(problems)


@PAGES
def test_commands_resolve(path: Path) -> None:
    problems = command_problems(_doc(path))
    assert not problems, "\n".join(problems)


BROKEN = """\
# Title

[ok](../README.md#data-root) [gone](nowhere.md) [anchor](../README.md#no-such-heading) [up](#title)
[web](https://optuna.org/#docs) <http://127.0.0.1:5000> [bad](https:/optuna.org)
`bench/no_such_module.py` `results/reference/no_such.csv` `results/default/report.md` `bench/cli.py`

```bash
make bench
make no-such-target
bench run experiments/no_such.yaml --no-such-flag
bench --results r run experiments/default.yaml --sampler-seed 1
.venv/bin/bench frobnicate
python -m bench report --no-such-flag
```

`make test` `bench list models` `docs/no_such.sh experiments/smoke.yaml`
"""


def test_the_checks_find_what_is_broken() -> None:
    """Each check fails on what it is there to catch, naming the page and the line, and passes what resolves."""
    page = parse(ROOT / "docs" / "broken.md", BROKEN)
    assert link_problems(page) == [
        "docs/broken.md:3: link 'nowhere.md' does not resolve: no such file",
        "docs/broken.md:3: link '../README.md#no-such-heading' does not resolve: no heading #no-such-heading in "
        "README.md",
        "docs/broken.md:4: link 'https:/optuna.org' does not resolve: malformed URL",
    ]
    # results/default/report.md is written by runs (git ignores it), bench/cli.py exists
    assert path_problems(page) == [
        "docs/broken.md:5: path `bench/no_such_module.py` does not exist",
        "docs/broken.md:5: path `results/reference/no_such.csv` does not exist",
    ]
    run = "docs/broken.md:10: `bench run experiments/no_such.yaml --no-such-flag`"
    assert command_problems(page) == [
        "docs/broken.md:9: `make no-such-target`: make has no target 'no-such-target'",
        f"{run}: `bench run` has no option --no-such-flag",
        f"{run}: no experiment file experiments/no_such.yaml",
        "docs/broken.md:12: `.venv/bin/bench frobnicate`: bench has no subcommand 'frobnicate'",
        "docs/broken.md:13: `python -m bench report --no-such-flag`: `bench report` has no option --no-such-flag",
        "docs/broken.md:16: `bench list models`: `bench list` does not take 'models' (choices: backbones, datasets, "
        "strategies)",
        "docs/broken.md:16: `docs/no_such.sh experiments/smoke.yaml`: no script docs/no_such.sh",
    ]


def test_slugs_follow_github() -> None:
    assert slug("Stability: the same experiment with other draws") == "stability-the-same-experiment-with-other-draws"
    assert slug("A/A: two names for one strategy") == "aa-two-names-for-one-strategy"
    assert slug("Which backbone? Transferability scores") == "which-backbone-transferability-scores"
    assert slug("`bench/loop.py` and **more**") == "benchlooppy-and-more"
    assert slug("Measured: the protocol's settings") == "measured-the-protocols-settings"

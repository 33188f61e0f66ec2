"""One progress display for a matrix, whichever workers train it: a bar over cells and a line per worker."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from bench.execution.worker import Event


class Display:
    """Shows the workers' events: ``with Display(console, total, finished, workers) as display: ...``."""

    def __init__(self, console: Console, total: int, finished: int, workers: int) -> None:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        self.progress = Progress(*columns, TimeElapsedColumn(), console=console)
        self.overall = self.progress.add_task("cells", total=total, completed=finished)
        self.lines = [self.progress.add_task("", total=None) for _ in range(workers)]
        self.failures = 0
        self.error: str | None = None  # a worker's fatal error, raised by whoever runs the workers

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, kind: type | None, err: BaseException | None, tb: TracebackType | None) -> None:
        for line in self.lines:
            self.progress.remove_task(line)
        self.progress.stop()

    def handle(self, event: Event) -> None:
        prefix = f"[{event.worker + 1}] " if len(self.lines) > 1 else ""
        if event.kind == "status":
            self.progress.update(self.lines[event.worker], description=prefix + event.text)
            return
        self.failures += event.kind == "failed"
        word = ("done", "green") if event.kind == "done" else ("failed", "red")
        self.progress.console.print(Text.assemble(prefix, word, " ", event.text))  # no markup from messages
        self.progress.advance(self.overall)

    def note(self, text: str) -> None:
        self.progress.console.print(Text(text))

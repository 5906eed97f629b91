"""Progress of long work, reported by the library and shown by whoever called it.

Library functions take a ``Progress`` and open one ``stage`` per piece of work (steps, samples, prompts); they never
print. The command line passes ``console_progress(console)``: a live bar with rate and time left on a terminal, and
plain lines (every tenth of the stage or every 15 s, and at its end) when the output goes to a file or a pipe, where
a live bar would be unreadable. ``NullProgress`` is the silent default.
"""

from __future__ import annotations

import time
from typing import Protocol


class Stage(Protocol):
    def advance(self, amount: float = 1, info: str = "") -> None: ...

    def __enter__(self) -> "Stage": ...

    def __exit__(self, *exc) -> None: ...


class Progress(Protocol):
    def stage(self, name: str, total: float | None = None, unit: str = "") -> Stage: ...

    def log(self, message: str) -> None: ...


class _NullStage:
    def advance(self, amount: float = 1, info: str = "") -> None:
        return None

    def __enter__(self) -> "_NullStage":
        return self

    def __exit__(self, *exc) -> None:
        return None


class NullProgress:
    """Reports nothing."""

    def stage(self, name: str, total: float | None = None, unit: str = "") -> _NullStage:
        return _NullStage()

    def log(self, message: str) -> None:
        return None


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class _LineStage:
    """A stage written as plain lines: readable in a log file."""

    def __init__(self, write, name: str, total: float | None, unit: str, every_s: float = 15.0) -> None:
        self.write, self.name, self.total, self.unit, self.every_s = write, name, total, unit, every_s
        self.done = 0.0
        self.started = self.last = time.perf_counter()
        self.next_fraction = 0.1
        self.info = ""

    def _line(self, final: bool = False) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total:g}" if self.total else ""
        text = f"[{self.name}] {self.done:g}{of} {self.unit}".rstrip() + f", {rate:.1f} {self.unit or 'items'}/s"
        if final:
            text += f", done in {_duration(elapsed)}"
        elif self.total and rate > 0:
            text += f", {_duration((self.total - self.done) / rate)} left"
        return text + (f"; {self.info}" if self.info else "")

    def advance(self, amount: float = 1, info: str = "") -> None:
        self.done += amount
        self.info = info or self.info
        now = time.perf_counter()
        crossed = bool(self.total) and self.done >= self.next_fraction * self.total
        if crossed or now - self.last >= self.every_s:
            if crossed:
                self.next_fraction = (int(10 * self.done / self.total) + 1) / 10
            self.last = now
            if not (self.total and self.done >= self.total):
                self.write(self._line())

    def __enter__(self) -> "_LineStage":
        self.write(f"[{self.name}] started" + (f": {self.total:g} {self.unit}" if self.total else ""))
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.write(self._line(final=True))


class _RichStage:
    def __init__(self, console, name: str, total: float | None, unit: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.progress import TimeRemainingColumn

        self.console, self.name, self.unit = console, name, unit
        self.bar = Progress(TextColumn(f"{name}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"),
                            TimeRemainingColumn(), TextColumn("{task.description}"), console=console)
        self.task = self.bar.add_task("", total=total, rate="")
        self.started = time.perf_counter()
        self.done = 0.0

    def advance(self, amount: float = 1, info: str = "") -> None:
        self.done += amount
        elapsed = time.perf_counter() - self.started
        rate = f"{self.done / elapsed:.1f}/s" if elapsed > 0 else ""
        self.bar.update(self.task, advance=amount, rate=rate, **({"description": info} if info else {}))

    def __enter__(self) -> "_RichStage":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()


class ConsoleProgress:
    """Progress on a rich console: live bars on a terminal, plain lines otherwise."""

    def __init__(self, console) -> None:
        self.console = console

    def stage(self, name: str, total: float | None = None, unit: str = ""):
        if self.console.is_terminal:
            return _RichStage(self.console, name, total, unit)
        return _LineStage(self._plain, name, total, unit)

    def _plain(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def log(self, message: str) -> None:
        self._plain(message)


def console_progress(console) -> ConsoleProgress:
    return ConsoleProgress(console)

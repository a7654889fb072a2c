"""How the command line talks to a person: colour, the terminal's width, quiet mode and a delayed progress display.

The global options (`--color` / `--no-color`, `--quiet`) set this module's state once per command;
everything that writes for a person asks it. Reports written to files are never coloured.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from types import TracebackType
from typing import IO, Any

# None: decide per stream (a terminal, and NO_COLOR unset); True/False: --color / --no-color.
_color: bool | None = None
_quiet = False

FALLBACK_WIDTH = 120  # output that is not a terminal (a pipe, a file): wide enough for the tables, not too wide to read
MIN_WIDTH = 60


def configure(color: bool | None, quiet: bool) -> None:
    """Set by the global options of `forewarn`."""
    global _color, _quiet
    _color, _quiet = color, quiet


def quiet() -> bool:
    return _quiet


def color_enabled(stream: IO[str] | None = None) -> bool:
    """Colour for `stream` (default stdout): --color / --no-color decide; else not when NO_COLOR is set
    (https://no-color.org: any non-empty value), not for TERM=dumb, and only on a terminal."""
    if _color is not None:
        return _color
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    stream = stream if stream is not None else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def width() -> int:
    """Columns for tables: $COLUMNS, else the terminal's width, else FALLBACK_WIDTH; at least MIN_WIDTH."""
    return max(MIN_WIDTH, shutil.get_terminal_size((FALLBACK_WIDTH, 24)).columns)


STYLES = {
    "critical": "1;31",
    "high": "1;31",
    "medium": "33",
    "low": "36",
    "violation": "31",
    "violated": "31",
    "waived": "2",
    "pending": "34",
    "met": "32",
    "ok": "32",
    "error": "1;31",
    "warning": "33",
    "title": "1",
}


def paint(text: str, style: str, enabled: bool) -> str:
    """`text` in the ANSI colour of `style` (a severity, a status or one of STYLES' other keys) when enabled."""
    code = STYLES.get(style)
    return f"\x1b[{code}m{text}\x1b[0m" if enabled and code else text


def note(message: str) -> None:
    """A summary line on stderr (silent with --quiet)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def rich_console(stderr: bool = False, file: IO[str] | None = None) -> Any:
    """A rich Console that follows the global colour options and the terminal's width."""
    from rich.console import Console

    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    enabled = color_enabled(stream)
    return Console(
        file=file,
        stderr=stderr,
        width=width(),
        force_terminal=enabled,
        no_color=not enabled,
        color_system="standard" if enabled else None,
        highlight=False,
    )


class Progress:
    """A progress display on stderr that appears only once the work has taken `delay` seconds, only on a
    terminal and never with --quiet; it disappears when the work ends. `advance` counts units of `total`
    (a bar), `stage` names the current step (a spinner when there is no total)."""

    def __init__(self, label: str, total: int | None = None, delay: float = 1.0) -> None:
        self.label = label
        self.total = total
        self.delay = delay
        self.done = 0
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        self._timer: threading.Timer | None = None
        self._ended = False
        self._started = 0.0

    @staticmethod
    def wanted() -> bool:
        if _quiet or os.environ.get("TERM") == "dumb":
            return False
        try:
            return sys.stderr.isatty()
        except (AttributeError, ValueError):
            return False

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self.wanted():
            self._timer = threading.Timer(self.delay, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _show(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with self._lock:
            if self._ended:
                return
            console = rich_console(stderr=True)
            if self.total:
                columns: tuple[Any, ...] = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
            else:
                columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
            self._bar = Progress(*columns, console=console, transient=True)
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done)
            for task in self._bar.tasks:
                task.start_time = self._started  # the elapsed time counts from the start of the work
            self._bar.start()

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done)

    def stage(self, label: str) -> None:
        with self._lock:
            self.label = label
            if self._bar is not None:
                self._bar.update(self._task, description=label)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._ended = True
            if self._bar is not None:
                self._bar.stop()

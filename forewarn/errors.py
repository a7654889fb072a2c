"""Failures that are not findings: the machine's (a full disk, a read-only or damaged log: exit 2, told as
the cause and its fix) and forewarn's own defects (exit 3, one line; the traceback only with --debug).

Exit 1 means "the audit found violations" and nothing else, so no failure may end with it: every
command runs under `guarded` (forewarn.cli's group), which turns an escaping exception into one of these.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import sys
import traceback
from collections.abc import Iterator
from typing import IO, Any

import click

__all__ = ["EXIT_INTERNAL", "InternalError", "Refused", "describe", "guarded", "log_errors", "note_log"]

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
"""128 + SIGINT, as a shell reports a command stopped by Ctrl-C."""

# SQLite primary result codes (sqlite3.Error.sqlite_errorcode & 0xff)
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 8, 10, 11, 13, 14, 26

_WRITE_FAILURES = frozenset({
    "SQLITE_IOERR_WRITE", "SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE",
    "SQLITE_IOERR_SHMMAP", "SQLITE_IOERR_DIR_FSYNC",
})
"""SQLite's extended codes for a write the disk refused (ENOSPC, EFBIG, EDQUOT end up as these too)."""
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_MISSING = {errno.ENOENT, errno.ENOTDIR}


class Refused(click.ClickException):
    """Something outside forewarn stops the command (exit 2): the message says what and how to fix it."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"forewarn: error: {self.format_message()}", err=True)


class InternalError(click.ClickException):
    """A defect in forewarn (exit 3): one line on stderr, the traceback before it with --debug."""

    exit_code = EXIT_INTERNAL

    def __init__(self, cause: BaseException, debug: bool) -> None:
        text = " ".join(str(cause).split())
        if len(text) > 300:
            text = text[:297] + "..."
        super().__init__(f"{type(cause).__name__}: {text}" if text else type(cause).__name__)
        self.cause = cause
        self.debug = debug

    def show(self, file: IO[Any] | None = None) -> None:
        if self.debug:
            traceback.print_exception(self.cause, file=sys.stderr)
            sys.stderr.flush()
        hint = "" if self.debug else " (run `forewarn --debug ...` for the traceback)"
        click.echo(f"forewarn: internal error: {self.format_message()}{hint}", err=True)


def _sqlite_code(exc: sqlite3.Error) -> int:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc)  # without a code (older Pythons): by SQLite's message
    for needle, found in (
        ("disk is full", _SQLITE_FULL),
        ("readonly database", _SQLITE_READONLY),
        ("malformed", _SQLITE_CORRUPT),
        ("not a database", _SQLITE_NOTADB),
        ("unable to open", _SQLITE_CANTOPEN),
        ("disk I/O error", _SQLITE_IOERR),
    ):
        if needle in text:
            return found
    return 0


def _writable(path: str) -> bool:
    """Whether the file and its folder (where SQLite puts its journal) can be written."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)


def describe(exc: BaseException, path: str | None = None) -> str | None:
    """The cause and fix of a failure of the machine or of a database (`path`, the log, when known);
    None when it is none of those (a defect)."""
    where = f"{path}: " if path else ""
    if isinstance(exc, sqlite3.Error):
        if "Could not decode to UTF-8" in str(exc):  # Python's sqlite3 reading text that is not UTF-8
            return (
                f"{where}the log is damaged (a stored text is not UTF-8): restore it from a backup,"
                " or rebuild it with `forewarn import` from its JSONL"
            )
        code = _sqlite_code(exc)
        if code == _SQLITE_FULL:
            return f"{where}the disk is full ({exc}): free some space and run it again"
        if code == _SQLITE_CANTOPEN and path is not None and os.path.isfile(path) and not _writable(path):
            code = _SQLITE_READONLY  # an existing log that cannot be opened for writing: it is read-only
        if code == _SQLITE_READONLY:
            return (
                f"{where}the log is read-only ({exc}): it can be audited and planned, but to change it"
                " make it (and its folder) writable, or work on a writable copy"
            )
        if code == _SQLITE_CANTOPEN:
            return f"{where}cannot open the log ({exc}): check that it and its folder exist and are accessible"
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return (
                f"{where}the log is damaged ({exc}): restore it from a backup, or rebuild it with"
                " `forewarn import` from its JSONL"
            )
        if code == _SQLITE_IOERR and getattr(exc, "sqlite_errorname", "") in _WRITE_FAILURES:
            return (
                f"{where}the log could not be written ({exc}, {exc.sqlite_errorname}): the disk is full or a"
                " file-size limit was reached: free some space and run it again"
            )
        if code == _SQLITE_IOERR:
            return f"{where}the disk failed to read or write the log ({exc}); check the disk and its free space"
        return None
    if type(exc).__name__ == "DamagedLog":  # forewarn.log.source.DamagedLog (not imported: light module)
        return f"{where}the log is damaged ({exc}): restore it from a backup, or rebuild it with `forewarn import`"
    if isinstance(exc, UnicodeDecodeError) and path is not None:  # text in the log that is not UTF-8
        return (
            f"{where}the log is damaged (a stored text is not UTF-8: {exc.reason}): restore it from a backup,"
            " or rebuild it with `forewarn import` from its JSONL"
        )
    if isinstance(exc, OSError) and exc.errno is not None:
        at = f"{exc.filename}: " if exc.filename is not None else ""
        reason = exc.strerror or str(exc)
        if exc.errno in _FULL:
            return f"{at}no space left to write ({reason}): free some space and run it again"
        if exc.errno == errno.EROFS:
            return f"{at}read-only file system ({reason}): write to a writable place instead"
        if exc.errno in _READ_ONLY:
            return f"{at}{reason}: check its permissions (and its folder's)"
        if exc.errno in _MISSING:
            return f"{at}{reason}: check the path (a folder must exist before files are written into it)"
        if exc.errno == errno.EISDIR:
            return f"{at}is a folder: name a file"
    return None


@contextlib.contextmanager
def log_errors(path: str) -> Iterator[None]:
    """Inside, a failure of the log's database (or of the disk under it) is a `Refused` naming `path`."""
    try:
        yield
    except (sqlite3.Error, UnicodeDecodeError, OSError, ValueError) as exc:
        message = describe(exc, path)
        if message is None:
            raise
        raise Refused(message) from exc


_PASSED = (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)
_log: list[str] = []  # the log the running command works on (note_log), for messages about its database


def note_log(path: str) -> None:
    """The running command works on the log at `path`: a database failure escaping it names `path`."""
    _log[:] = [path]


@contextlib.contextmanager
def guarded(debug: bool) -> Iterator[None]:
    """Around a whole command: a failure of the machine becomes `Refused`, any other exception an
    `InternalError`; click's own exits and errors pass unchanged."""
    _log.clear()
    try:
        yield
    except _PASSED:
        raise
    except KeyboardInterrupt:  # click would say "Aborted!" and exit 1, which reads as "violations found"
        click.echo("forewarn: interrupted", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # every escaping failure gets an exit status that cannot pass for findings
        message = describe(exc, _log[0] if _log and not isinstance(exc, OSError) else None)
        if message is not None:
            raise Refused(message) from exc
        raise InternalError(exc, debug) from exc

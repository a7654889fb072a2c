"""Opening an existing event log for commands that only read it (audit, plan): read-only, and only if it
is a forewarn log. Nothing is created or written: a 0-byte file or another program's database is
refused as it is, and a log on a read-only file system or a read-only file can be audited.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import urlencode

from forewarn.errors import describe
from forewarn.log.store import EventStore, LogError

__all__ = ["check_writable_target", "open_reader", "read_only_connection"]

REQUIRED_COLUMNS = frozenset({"seq", "id", "type", "at", "at_us", "payload"})
"""Columns of the events table that every reader of the log uses."""


def _uri(path: str | Path, **params: str) -> str:
    return f"{Path(path).absolute().as_uri()}?{urlencode(params)}"


def _writable_place(path: str | Path) -> bool:
    """Whether the log's file and its folder can be written (SQLite needs the folder for its -wal and -shm)."""
    folder = Path(path).absolute().parent
    return os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)


def not_a_log(path: str, why: str) -> LogError:
    return LogError(
        f"{path}: not a forewarn event log: {why}; import one with `forewarn import --db {path} FILE.jsonl`"
    )


def _check(conn: sqlite3.Connection, path: str) -> None:
    """LogError unless the database holds forewarn's events table."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "events" not in tables:
        raise not_a_log(path, "it has no events table" if tables else "it is empty")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    missing = sorted(REQUIRED_COLUMNS - columns)
    if missing:
        raise not_a_log(path, f"its events table has no {', '.join(missing)} column")


def read_only_connection(path: str) -> sqlite3.Connection:
    """A read-only connection to the forewarn log at `path`; LogError if it is none (or cannot be read).

    A log in WAL mode needs its -shm file, which a read-only folder cannot hold: where neither the file
    nor its folder can be written, nothing can change it either, and it is opened as immutable.
    """
    try:
        conn = sqlite3.connect(_uri(path, mode="ro"), uri=True)
        try:
            _check(conn, path)
        except BaseException:
            conn.close()
            raise
        return conn
    except sqlite3.OperationalError as exc:
        if _writable_place(path) or not os.path.isfile(path):
            raise LogError(_log_message(exc, path)) from exc
    except sqlite3.Error as exc:
        raise LogError(_log_message(exc, path)) from exc
    try:
        conn = sqlite3.connect(_uri(path, mode="ro", immutable="1"), uri=True)
        _check(conn, path)
    except sqlite3.Error as exc:
        raise LogError(_log_message(exc, path)) from exc
    return conn


def _log_message(exc: sqlite3.Error, path: str) -> str:
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return str(not_a_log(path, "it is not a SQLite database"))
    return describe(exc, path) or f"{path}: cannot read the log ({exc})"


def open_reader(path: str, publish: bool = False) -> EventStore:
    """The forewarn log at `path`, for reading (LogError if it is none); nothing of the log is created or changed.

    It is checked over a read-only connection. Where the log and its folder can be written, it is then read
    over an ordinary connection with SQL writes turned off (`query_only`): such a connection, the last to
    close, removes the -wal and -shm files a read-only one would leave beside the log. With `publish`
    (forewarn plan, which stores its published plan in the log where it may), writes stay allowed:
    publishing creates only its own table, in a database already checked to be a forewarn log.
    """
    conn = read_only_connection(path)
    if _writable_place(path):
        try:
            plain = sqlite3.connect(path)
        except sqlite3.Error:
            return EventStore.attach(path, conn)
        conn.close()
        if not publish:
            plain.execute("PRAGMA query_only = ON")
        conn = plain
    return EventStore.attach(path, conn)


def check_writable_target(path: str) -> None:
    """Before a command writes to the log at `path` (import, run): LogError if the file is another program's
    database (tables, but not forewarn's events table): forewarn adds no tables to it. A missing file, a
    0-byte file or a database without tables become a new log."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    try:
        conn = sqlite3.connect(_uri(path, mode="ro"), uri=True)
        try:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return  # not readable this way: opening it for writing says why (damaged, not a database, read-only)
    if tables and "events" not in tables:
        raise LogError(
            f"{path}: not a forewarn event log: it is another database (no events table), which forewarn"
            " leaves alone: give a new file, or an existing log, as --db"
        )

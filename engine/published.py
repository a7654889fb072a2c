"""The engine's last plan, published in the log's database, so that `forewarn plan` answers without evaluating.

Whoever evaluates the log for a plan (the `forewarn run` loop on every fresh evaluation, and
`forewarn plan` itself) publishes its now-independent part: every pending obligation with the
instant it may be sent from, the overrun candidates, missed deadlines and cancellations, valid
from its as-of up to its horizon (see engine.cache: until then a fresh evaluation differs in
its as-of only). A later `plan` whose key matches and whose as-of falls in that span takes the
plan from it: reading a row and splitting it at the as-of, instead of reading, validating and
evaluating the whole log.

The key is the log's high-water recording sequence (any append invalidates it) and a digest
of what else decides a plan: forewarn's version and installed code, Python's version, the
calendar data (holidays, tz database) and the bytes of the rule files. This module imports
nothing heavy (no pydantic, no calendar): the whole `plan` command on a published plan stays
within a small start-up budget.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from forewarn.instants import epoch_us
from forewarn.policy.files import policy_files

__all__ = [
    "TABLE",
    "PlanView",
    "Snapshot",
    "calendar_data_version",
    "due_or_upcoming",
    "json_entry",
    "lookup",
    "plan_key",
    "publish",
    "view",
]

TABLE = "published_plan"
FORMAT = 1
"""Version of the stored snapshot's layout (part of the key)."""


def due_or_upcoming(pending: bool, send_from: Any, not_after: Any, now: Any) -> str | None:
    """Where a plan entry goes as of `now`: "due", "upcoming", or None (left out).

    A pending obligation is due once it may be sent, and so is a missed one the engine sends
    late (`pending` is true for both: engine.planner.Due.sendable); any other missed one (its
    deadline passed, nothing sent) is only listed at its deadline instant itself, when a notice
    is still on time. The one rule of engine.planner.PlanBasis.at and of a published plan (instants or
    epoch microseconds alike)."""
    if not pending and not_after != now:
        return None
    return "due" if send_from <= now else "upcoming"


# --------------------------------------------------------------------------- the key


def _dist_version(name: str) -> str:
    """An installed distribution's version from its .dist-info directory name ("" if none):
    importing importlib.metadata would cost more than everything else this module does."""
    prefix = name.replace("-", "_") + "-"
    for entry in sys.path:
        with contextlib.suppress(OSError):
            for found in os.listdir(entry or "."):
                if found.startswith(prefix) and found.endswith(".dist-info"):
                    return found[len(prefix) : -len(".dist-info")]
    return ""


_DEFAULT_TZPATH = ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo", "/etc/zoneinfo")


def calendar_data_version() -> str:
    """The business calendar's data: the holidays library, the tzdata package and the system tz database
    (the version line of `tzdata.zi`, or the `+VERSION` file, in each directory zoneinfo searches: $PYTHONTZPATH,
    else CPython's default list; `zoneinfo.TZPATH` itself would import sysconfig, a noticeable part of a
    published plan's start-up)."""
    search = os.environ.get("PYTHONTZPATH")
    roots = search.split(os.pathsep) if search else _DEFAULT_TZPATH
    system = []
    for root in roots:
        for name in ("tzdata.zi", "+VERSION"):
            with contextlib.suppress(OSError), open(os.path.join(root, name), "rb") as handle:
                system.append(f"{root}/{name}: {handle.readline().decode('ascii', 'replace').strip()}")
    return f"holidays {_dist_version('holidays')}; tzdata {_dist_version('tzdata')}; system {', '.join(system)}"


def code_fingerprint() -> str:
    """forewarn's code as installed: every Python file of its packages, by path, size and modification time.

    The version number alone says nothing of an editable install (or a reinstall under the same
    version): a plan published by an engine running older code must not be served to newer code."""
    import forewarn

    roots = {Path(forewarn.__file__).parent, Path(__file__).parent}  # forewarn/ and engine/ (forewarn.engine)
    digest = hashlib.sha256()
    for root in sorted(roots):
        pending = [str(root)]
        while pending:
            with os.scandir(pending.pop()) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                        pending.append(entry.path)
                    elif entry.name.endswith(".py"):
                        info = entry.stat()
                        digest.update(f"{entry.path}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def plan_key(rules_dir: Path) -> str:
    """What, besides the log, decides a plan: forewarn's version and code, Python's version, the calendar
    data and the rule files' bytes."""
    digest = hashlib.sha256()
    parts = (
        f"format {FORMAT}",
        f"forewarn {_dist_version('forewarn')} {code_fingerprint()}",
        f"python {sys.version}",
        calendar_data_version(),
    )
    for part in parts:
        digest.update(part.encode() + b"\0")
    for path in policy_files(rules_dir):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


# --------------------------------------------------------------------------- the snapshot


class Snapshot(NamedTuple):
    """A plan basis in JSON-ready form, valid for as-of instants in [as_of_us, horizon_us).

    The pending obligations are columns, in plan order (the same index in each)."""

    seq: int
    """The log's high-water recording sequence it was computed from."""
    as_of_us: int
    horizon_us: int
    pending: list[bool]
    """Still pending, or missed and sent late (else missed, for a person: its deadline passed with nothing sent)."""
    send_from_us: list[int]
    not_after_us: list[int]
    local: list[str]
    """The deadline in the customer's time."""
    texts: list[str]
    """The obligation's JSON as it appears in the plan (`json_entry`): a plan is written, not encoded."""
    overruns: list[list[Any]]
    """[end_us, alert JSON]: an alert once the end has passed."""
    missed: list[dict[str, Any]]
    cancellations: list[dict[str, str]]

    def body(self) -> bytes:
        """Stored form: compact JSON of everything but the obligations' texts, then those texts, each after
        a NUL (which JSON text cannot contain unescaped): splitting is far cheaper than decoding them."""
        head = {
            "pending": self.pending,
            "send_from_us": self.send_from_us,
            "not_after_us": self.not_after_us,
            "local": self.local,
            "overruns": self.overruns,
            "missed": self.missed,
            "cancellations": self.cancellations,
        }
        import orjson  # the writer's side (an engine, or a plan that evaluated), where its import is paid anyway

        return "\0".join([orjson.dumps(head).decode(), *self.texts]).encode()

    @classmethod
    def from_row(cls, seq: int, as_of_us: int, horizon_us: int, body: bytes) -> Snapshot:
        """The snapshot stored as `body()`."""
        head, *texts = body.decode().split("\0")
        d = json.loads(head)  # the reader's side: json imports far faster than orjson, which would gain little here
        if len(texts) != len(d["pending"]):
            raise ValueError("published plan: entries and texts differ in number")
        return cls(seq, as_of_us, horizon_us, d["pending"], d["send_from_us"], d["not_after_us"], d["local"], texts,
                   d["overruns"], d["missed"], d["cancellations"])


def json_entry(obligation: dict[str, Any]) -> str:
    """An obligation's JSON as an element of a plan's `due`/`upcoming` list: two-space indented, at depth 2."""
    import orjson

    return "    " + orjson.dumps(obligation, option=orjson.OPT_INDENT_2).decode().replace("\n", "\n    ")


class PlanView(NamedTuple):
    """A plan as shown (cli.md's JSON, plus each deadline in the customer's time for the table)."""

    as_of: datetime
    due: list[tuple[str, str]]
    """(deadline in the customer's time, obligation JSON text: `json_entry`) per entry due now."""
    upcoming: list[tuple[str, str]]
    alerts: list[dict[str, Any]]
    cancellations: list[dict[str, str]]
    published: bool = False
    """Taken from a published plan (not evaluated by this process)."""


def view(
    snapshot: Snapshot, now: datetime, extra_alerts: Sequence[dict[str, Any]] = (), published: bool = False
) -> PlanView:
    """The plan as of `now` (inside the snapshot's span)."""
    now_us = epoch_us(now)
    due: list[tuple[str, str]] = []
    upcoming: list[tuple[str, str]] = []
    columns = zip(
        snapshot.pending, snapshot.send_from_us, snapshot.not_after_us, snapshot.local, snapshot.texts, strict=True
    )
    for pending, send_from, not_after, local, text in columns:
        where = due_or_upcoming(pending, send_from, not_after, now_us)
        if where is not None:
            (due if where == "due" else upcoming).append((local, text))
    alerts = [alert for end, alert in snapshot.overruns if end < now_us] + snapshot.missed + list(extra_alerts)
    return PlanView(now, due, upcoming, alerts, snapshot.cancellations, published)


def publish(conn: sqlite3.Connection, key: str, snapshot: Snapshot) -> bool:
    """Store the snapshot as the log's published plan; False if the database would not take it at once
    (read-only, or another process is writing: no waiting), or if it holds a better one: made from more
    of the log, or from the same log as of a later instant (the current plan of a running engine is not
    replaced by a query about the past). Publishing is an optimisation, never a reason to wait or fail."""
    (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        with conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL,"
                " seq INTEGER NOT NULL, as_of_us INTEGER NOT NULL, horizon_us INTEGER NOT NULL, body BLOB NOT NULL)"
            )
            stored = conn.execute(
                f"INSERT INTO {TABLE} (id, key, seq, as_of_us, horizon_us, body) VALUES (1, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET key = excluded.key, seq = excluded.seq, as_of_us = excluded.as_of_us,"
                " horizon_us = excluded.horizon_us, body = excluded.body"
                " WHERE excluded.key <> key OR excluded.seq > seq"
                " OR (excluded.seq = seq AND excluded.as_of_us >= as_of_us)",
                (key, snapshot.seq, snapshot.as_of_us, snapshot.horizon_us, snapshot.body()),
            ).rowcount
    except sqlite3.Error:
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
    return stored == 1


def lookup(conn: sqlite3.Connection, key: str, now: datetime) -> Snapshot | None:
    """The published snapshot if it was made from this log as it is (nothing appended since), with
    this key, and `now` is inside its span; else None."""
    try:
        row = conn.execute(f"SELECT seq, as_of_us, horizon_us, key FROM {TABLE} WHERE id = 1").fetchone()
        if row is None or row[3] != key:
            return None
        (high,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        seq, as_of_us, horizon_us, _key = row
        if seq != high or not as_of_us <= epoch_us(now) < horizon_us:
            return None  # (its body, megabytes for a large plan, not read)
        (body,) = conn.execute(f"SELECT body FROM {TABLE} WHERE id = 1").fetchone()
    except sqlite3.Error:  # no such table: never published
        return None
    try:
        return Snapshot.from_row(seq, as_of_us, horizon_us, body)
    except (ValueError, KeyError, TypeError, AttributeError):  # damaged: as if never published
        return None


"""`forewarn verify`: is the log the one that was recorded? Its hash chain, and its append-only guards.

Walks the events in recording order, recomputing each hash (forewarn.log.chain) from the previous one, and
stops at the first event that breaks the chain, saying what is wrong with it:

- `deleted`: sequences are missing (the chain skips them);
- `reordered`: the event recorded at this sequence is now at another one (rows swapped or moved);
- `payload changed`: the payload no longer matches its hash, while the chain goes on from that hash;
- `hash missing` / `hash mismatch`: the event has no hash, or one that matches nothing recorded there.

With the chain intact, it checks that every event's other columns (its typed columns, forewarn.log.columns,
and the indexed ones) hold what its payload gives (`columns changed`): the chain covers the payloads, and an
audit reads the columns.

It also checks that the append-only triggers are present and exactly as forewarn creates them (`trigger
missing`, `trigger altered`, `unexpected trigger`), and, given a fingerprint a report stated
(`--expect SEQ:HEAD`), that this log holds that log (`not the expected log`: events after the fingerprinted
head were deleted, or the log is another one). Reads the database read-only.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from forewarn.log import schema
from forewarn.log.chain import GENESIS, Fingerprint, link

__all__ = ["NotALog", "Problem", "Verdict", "verify"]

BATCH = 10_000


class NotALog(Exception):
    """The file is not a forewarn event log this forewarn can verify (exit 2)."""


@dataclass(frozen=True)
class Problem:
    kind: str  # deleted, reordered, payload changed, hash missing, hash mismatch, trigger ..., not the expected log
    detail: str
    seq: int | None = None
    id: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.seq is not None:
            where = f"seq {self.seq}" + (f" (id {self.id})" if self.id is not None else "") + ": "
        return f"broken: {where}{self.kind}: {self.detail}"


@dataclass
class Verdict:
    events: int = 0
    fingerprint: Fingerprint = field(default_factory=lambda: Fingerprint(0, GENESIS))
    """Of the intact part of the chain (all of it when the chain is intact)."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        if self.intact:
            return [f"intact: {self.events} events, {self.fingerprint}; append-only triggers in place"]
        return [str(p) for p in self.problems]


def verify(path: str | Path, expect: Fingerprint | None = None) -> Verdict:
    """Check the log at `path`; NotALog, schema.OutdatedLog or schema.NewerLog if it cannot be checked."""
    conn = _open(Path(path))
    try:
        verdict = Verdict()
        verdict.problems.extend(_trigger_problems(conn))
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        if "hash" not in columns:
            verdict.problems.append(Problem("hash missing", "the events table has no hash column"))
            return verdict
        chain_problem = _walk(conn, verdict, expect)
        if chain_problem is not None:
            verdict.problems.insert(0, chain_problem)
        else:
            column_problem = _columns_problem(conn)
            if column_problem is not None:
                verdict.problems.append(column_problem)
        return verdict
    finally:
        conn.close()


def _open(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise NotALog(f"{path}: no such file")
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise NotALog(f"{path}: cannot open: {exc}") from exc
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = schema.version_of(conn) if {"events", "meta"} <= tables else None
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise NotALog(f"{path}: not a forewarn event log ({exc})") from exc
    if version is None:
        conn.close()
        raise NotALog(f"{path}: not a forewarn event log (no events table or schema version)")
    if version < schema.CURRENT:
        conn.close()
        raise schema.OutdatedLog(str(path), version)
    if version > schema.CURRENT:
        conn.close()
        raise schema.NewerLog(str(path), version)
    return conn


def _trigger_problems(conn: sqlite3.Connection) -> list[Problem]:
    found = dict(
        conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'").fetchall()
    )
    problems = []
    for name, sql in schema.TRIGGERS.items():
        if name not in found:
            problems.append(Problem("trigger missing", f"the append-only trigger {name} is gone: events can change"))
        elif " ".join(str(found[name]).split()) != " ".join(sql.split()):
            problems.append(Problem("trigger altered", f"{name} is not forewarn's: {found[name]}"))
    for name in sorted(set(found) - set(schema.TRIGGERS)):
        problems.append(Problem("unexpected trigger", f"{name} on events is not forewarn's: {found[name]}"))
    return problems


Row = tuple[int, str, str | bytes, bytes | None]


def _rows(conn: sqlite3.Connection, after: int = 0) -> Iterator[Row]:
    cursor = conn.execute("SELECT seq, id, payload, hash FROM events WHERE seq > ? ORDER BY seq", [after])
    while rows := cursor.fetchmany(BATCH):
        yield from rows


def _walk(conn: sqlite3.Connection, verdict: Verdict, expect: Fingerprint | None) -> Problem | None:
    """Recompute the chain; the first broken event's problem, or None. `verdict` gets the intact part."""
    sha, pack = hashlib.sha256, struct.Struct(">Q").pack
    head, last, count = GENESIS, 0, 0
    rows = _rows(conn)
    problem = None
    for seq, ident, payload, stored in rows:
        if seq != last + 1:
            problem = _gap(last, seq, ident)
            break
        data = payload.encode() if isinstance(payload, str) else payload
        if stored is None or sha(head + pack(seq) + data).digest() != stored:
            problem = _diagnose(conn, head, seq, ident, payload, stored)
            break
        head, last, count = stored, seq, count + 1
        if expect is not None and seq == expect.seq and head != expect.head:
            problem = Problem(
                "not the expected log",
                f"its chain head here is sha256:{head.hex()}, the expected log's {expect.head_text}",
                seq,
                ident,
            )
            break
    verdict.events, verdict.fingerprint = count, Fingerprint(last, head)
    if problem is None and expect is not None and expect.seq == 0 and expect.head != GENESIS:
        detail = f"the empty log's head is sha256:{GENESIS.hex()}, not {expect.head_text}"
        problem = Problem("not the expected log", detail)
    if problem is None and expect is not None and last < expect.seq:
        problem = Problem(
            "not the expected log",
            f"the log ends at seq {last}, the expected one at seq {expect.seq}: events at the end were deleted"
            " (or this is another log)",
        )
    return problem


def _columns_problem(conn: sqlite3.Connection) -> Problem | None:
    """The first event whose stored columns (the typed ones and those derived from the event: forewarn.log.store
    `row_values`) are not what its payload gives: the chain covers the payload, an audit reads the columns."""
    from pydantic import ValidationError

    from forewarn.events import EVENT_ADAPTER
    from forewarn.log.store import COLUMNS, PAYLOAD, row_values

    cursor = conn.execute(f"SELECT seq, {', '.join(COLUMNS)} FROM events ORDER BY seq")  # names of ours
    validate = EVENT_ADAPTER.validate_json
    while rows := cursor.fetchmany(BATCH):
        for seq, *stored in rows:
            payload = stored[PAYLOAD]
            try:
                expected = row_values(validate(payload), payload)
            except ValidationError:
                return Problem("payload invalid", "the payload is not a valid event (its hash matches it)", seq,
                               stored[0])
            if tuple(stored) != expected:
                changed = [name for name, a, b in zip(COLUMNS, stored, expected, strict=True) if a != b]
                return Problem(
                    "columns changed",
                    f"column(s) {', '.join(changed)} do not hold what the payload says (an audit reads them)",
                    seq,
                    stored[0],
                )
    return None


def _gap(last: int, seq: int, ident: str) -> Problem:
    if seq <= last:  # only a sequence of 0 or below can come first
        return Problem("hash mismatch", "a sequence below 1 is not one forewarn records", seq, ident)
    missing = f"seq {last + 1}" if seq == last + 2 else f"seq {last + 1} to {seq - 1}"
    detail = f"{missing} missing: {seq - last - 1} event(s) deleted before seq {seq} (id {ident})"
    return Problem("deleted", detail, last + 1, None)


def _diagnose(
    conn: sqlite3.Connection, prev: bytes, seq: int, ident: str, payload: str | bytes, stored: bytes | None
) -> Problem:
    """What is wrong with the first event whose hash does not follow from `prev` (the trusted hash before it)."""
    if stored is None:
        return Problem("hash missing", "the event has no hash: it was appended without the chain", seq, ident)
    for other, other_id, other_payload, other_stored in _rows(conn):
        if other != seq and link(prev, seq, other_payload) in (stored, other_stored):
            return Problem(
                "reordered",
                f"the event recorded at seq {seq} is now at seq {other} (id {other_id})",
                seq,
                ident,
            )
    following = next(_rows(conn, seq), None)
    if following is not None and following[0] == seq + 1 and following[3] == link(stored, seq + 1, following[2]):
        return Problem("payload changed", "the payload does not match its hash (the chain goes on from the hash)",
                       seq, ident)
    if following is None:
        return Problem("payload changed", "the last event's payload (or hash) does not match its hash", seq, ident)
    return Problem("hash mismatch", "the event is not the one recorded here (payload, hash or position changed)",
                   seq, ident)

"""Tickets owed to an external ticket system (`--ticket-webhook`): queued with the communication they
belong to, POSTed by the engine, retried with backoff until the system accepts them.

Light on imports: `forewarn plan` reads `failing` for its alerts and must start fast."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forewarn.engine.draft import Draft

_QUEUE = """
CREATE TABLE IF NOT EXISTS ticket_queue (
    communication TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    ticket TEXT,
    created REAL NOT NULL
)
"""
PENDING, OPENED = "pending", "opened"


def ensure_queue(conn: sqlite3.Connection) -> None:
    conn.execute(_QUEUE)


def owe(conn: sqlite3.Connection, draft: Draft, at: datetime) -> None:
    """Queue the ticket DRAFT's communication opens (inside the caller's transaction, with its record)."""
    from forewarn.engine.tickets import ticket_for

    payload = ticket_for(draft, at).to_json()
    conn.execute(
        "INSERT OR IGNORE INTO ticket_queue (communication, payload, state, created) VALUES (?, ?, ?, ?)",
        (draft.communication, json.dumps(payload), PENDING, time.time()),
    )


def due(conn: sqlite3.Connection) -> list[str]:
    """Communications whose ticket is owed and may be tried now (backoff passed)."""
    rows = conn.execute(
        "SELECT communication FROM ticket_queue WHERE state = ? AND next_try <= ? ORDER BY created, communication",
        (PENDING, time.time()),
    )
    return [c for (c,) in rows]


def owed(conn: sqlite3.Connection) -> int:
    """How many tickets are owed (not accepted yet), whether or not their backoff has passed."""
    (n,) = conn.execute("SELECT count(*) FROM ticket_queue WHERE state = ?", (PENDING,)).fetchone()
    return int(n)


def take(conn: sqlite3.Connection, communication: str, owner: str, lease: float) -> dict[str, str] | None:
    """Lease the owed ticket of COMMUNICATION to OWNER: its payload, or None (opened or held elsewhere)."""
    now = time.time()
    cur = conn.execute(
        "UPDATE ticket_queue SET owner = ?, lease_until = ? WHERE communication = ? AND state = ?"
        " AND (owner IS NULL OR owner = ? OR lease_until <= ?)",
        (owner, now + lease, communication, PENDING, owner, now),
    )
    if cur.rowcount != 1:
        return None
    (payload,) = conn.execute("SELECT payload FROM ticket_queue WHERE communication = ?", (communication,)).fetchone()
    data: dict[str, str] = json.loads(payload)
    return data


def opened(conn: sqlite3.Connection, communication: str, ticket: str) -> None:
    conn.execute(
        "UPDATE ticket_queue SET state = ?, ticket = ?, lease_until = 0 WHERE communication = ?",
        (OPENED, ticket, communication),
    )


def failed(conn: sqlite3.Connection, communication: str, error: str, backoff: float, cap: float = 3600.0) -> None:
    """Count a failed POST; the next try waits BACKOFF seconds, doubled per failure, at most CAP."""
    (attempts,) = conn.execute(
        "SELECT attempts FROM ticket_queue WHERE communication = ?", (communication,)
    ).fetchone()
    wait = min(cap, backoff * 2**attempts)
    conn.execute(
        "UPDATE ticket_queue SET attempts = attempts + 1, last_error = ?, next_try = ?, lease_until = 0"
        " WHERE communication = ?",
        (error[:500], time.time() + wait, communication),
    )


def failing(conn: sqlite3.Connection) -> list[tuple[str, int, str | None, float]]:
    """(communication, attempts, last error, next try) of owed tickets whose POST failed; none if no
    webhook was ever used on this log."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ticket_queue'").fetchone()
    if not exists:
        return []
    rows = conn.execute(
        "SELECT communication, attempts, last_error, next_try FROM ticket_queue WHERE state = ? AND attempts > 0"
        " ORDER BY created, communication",
        (PENDING,),
    )
    return [(c, int(a), e, float(n)) for c, a, e, n in rows]

"""`forewarn demo`: the main job on an embedded sample log, with every output's location printed."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import click

SAMPLE = "basic.jsonl"
SAMPLE_AS_OF = datetime(2026, 10, 22, tzinfo=UTC)


def sample_path() -> Path:
    """The bundled sample log."""
    return Path(str(resources.files("forewarn") / "samples" / SAMPLE))


def run_demo(workdir: Path) -> None:
    """Import the sample into a fresh log in `workdir`, show what it holds, and audit it."""
    from forewarn.audit.findings import audit
    from forewarn.audit.formats import render
    from forewarn.log.source import import_files, read_store
    from forewarn.log.store import EventStore
    from forewarn.policy.loader import load_policy

    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "forewarn.db"
    for leftover in (db, db.with_suffix(".db-wal"), db.with_suffix(".db-shm")):
        leftover.unlink(missing_ok=True)
    policy = load_policy()
    store = EventStore(db)
    result = import_files(store, [sample_path()], policy.ids)
    click.echo(f"imported {result.appended} events from {sample_path().name} into {db}")
    for event_type, n in store.counts_by_type().items():
        click.echo(f"  {n:6d}  {event_type}")
    events = read_store(store)
    store.close()
    verdict = audit(events, policy, SAMPLE_AS_OF)
    report = workdir / "audit.json"
    report.write_text(render("json", verdict), encoding="utf-8")
    click.echo(render("table", verdict))
    click.echo(f"event log:    {db}")
    click.echo(f"audit (JSON): {report}")

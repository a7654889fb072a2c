"""`forewarn demo`: the main job on an embedded sample: engine into the outbox, audit, HTML report."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import click

LIFECYCLE = "quarter-lifecycle.jsonl"  # a quarter's maintenances, incidents, releases: no mail sent yet
START = datetime(2025, 12, 1, tzinfo=UTC)
END = datetime(2026, 4, 15, tzinfo=UTC)


def sample_path(name: str = LIFECYCLE) -> Path:
    """A bundled sample log."""
    return Path(str(resources.files("forewarn") / "samples" / name))


def run_demo(workdir: Path) -> None:
    """Import the sample, let the engine send everything due through the quarter, audit, report."""
    from forewarn.audit.findings import audit
    from forewarn.audit.formats import render
    from forewarn.engine.delivery import OutboxDirectory
    from forewarn.engine.replay import replay
    from forewarn.engine.runner import Engine
    from forewarn.log.source import import_files, load_files, read_store
    from forewarn.log.store import EventStore
    from forewarn.policy.loader import load_policy

    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "forewarn.db"
    for leftover in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        leftover.unlink(missing_ok=True)
    outbox_dir = workdir / "outbox"
    for old in outbox_dir.glob("*.eml"):
        old.unlink()
    policy = load_policy()
    store = EventStore(db)
    imported = import_files(store, [sample_path()], policy.ids)
    click.echo(f"1. imported {imported.appended} lifecycle events from {LIFECYCLE}:")
    for event_type, n in store.counts_by_type().items():
        click.echo(f"     {n:5d}  {event_type}")

    delivery = OutboxDirectory(outbox_dir)
    engine = Engine(store, policy, delivery)
    sent = replay(engine, START, END)
    click.echo(f"2. the engine, its clock stepped through the quarter, sent {sent} e-mails (with tickets)")

    result = audit(read_store(store), policy, END)
    s = result.summary
    click.echo(
        f"3. the audit as of {END:%Y-%m-%d}: {s.obligations} obligations, {s.met} met, "
        f"{len(result.violations)} violations"
    )
    reports = {
        fmt: workdir / f"audit.{ext}"
        for fmt, ext in (("html", "html"), ("json", "json"), ("sarif", "sarif"), ("markdown", "md"))
    }
    for fmt, path in reports.items():
        path.write_text(render(fmt, result), encoding="utf-8")
    store.close()

    # For contrast: the same kind of quarter with violations seeded (the sample the tests use).
    seeded = audit(load_files([sample_path("quarter.jsonl")], policy.ids), policy, END)
    reports["html, seeded"] = workdir / "audit-seeded-violations.html"
    reports["html, seeded"].write_text(render("html", seeded), encoding="utf-8")
    click.echo(
        f"4. for contrast, a quarter with seeded violations: {len(seeded.violations)} violations, "
        f"{sum(f.status == 'waived' for f in seeded.findings)} waived"
    )

    seeded_copy = workdir / "quarter-seeded.jsonl"  # the samples beside the results, for the commands to try next
    seeded_copy.write_bytes(sample_path("quarter.jsonl").read_bytes())
    (workdir / LIFECYCLE).write_bytes(sample_path().read_bytes())

    click.echo("")
    rows = [("event log", str(db)), ("outbox", f"{outbox_dir}/ ({len(list(outbox_dir.glob('*.eml')))} .eml files)")]
    rows += [(f"audit ({fmt})", str(path)) for fmt, path in reports.items()]
    rows.append(("samples", f"{seeded_copy} (seeded violations), {workdir / LIFECYCLE} (no mail sent yet)"))
    wide = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        click.echo(f"{label + ':':<{wide}}{value}")
    click.echo("")
    for line in next_commands(program(), db, seeded_copy):
        click.echo(line)


def program() -> str:
    """How to call forewarn from here, as the person who ran the demo would type it: `forewarn` if that is
    the program on PATH, else the path of the running one (relative when below the working directory)."""
    import os
    import shutil
    import sys

    running = Path(sys.argv[0]) if Path(sys.argv[0]).name == "forewarn" else Path(sys.executable).parent / "forewarn"
    on_path = shutil.which("forewarn")
    if on_path and running.exists() and os.path.samefile(on_path, running):
        return "forewarn"
    try:
        return str(running.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(running.absolute())


def next_commands(prog: str, db: Path, seeded: Path) -> list[str]:
    """The commands to try next, runnable exactly as printed from the directory the demo ran in."""
    from shlex import quote

    lines = ["Next, try (from this directory):"]
    if prog != "forewarn":
        activate = quote(str(Path(prog).parent / "activate"))
        lines.insert(0, f"(forewarn is {prog}; `source {activate}` puts it on PATH.)")
        prog = quote(prog)
    db_arg, seeded_arg, report = quote(str(db)), quote(str(seeded)), quote(str(seeded.parent / "q1.html"))
    period = "--since 2026-01-01 --until 2026-04-01 --as-of 2026-04-15"
    proposal = "start=2026-04-06T07:00:00Z,end=2026-04-06T09:00:00Z,customers=all,impact=interruption"
    lines += [
        f"  {prog} audit --events {seeded_arg} {period}",
        f"  {prog} audit --events {seeded_arg} {period} --format html -o {report}",
        f"  {prog} plan --db {db_arg} --as-of 2026-03-02T10:00:00Z",
        f"  {prog} plan --db {db_arg} --as-of 2026-04-03T16:00:00Z --propose '{proposal}'",
        f"  {prog} rules list",
    ]
    return lines

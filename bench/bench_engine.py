"""Benchmark the engine: `run --once` sends/s into a loopback SMTP server, and `plan` latency.

    .venv/bin/python bench/bench_engine.py --customers 1000 --runs 3
    .venv/bin/python bench/bench_engine.py --plan --open 10000 --runs 5
    .venv/bin/python bench/bench_engine.py --appends-on /tmp/forewarn-bench/year-x1.25.db --runs 20

The send benchmark builds a log where, at one instant, a maintenance and a
critical incident for every customer make 2 x customers notices due, then
times `forewarn run --once --now T --smtp 127.0.0.1:PORT` as a subprocess
(start-up, evaluation, rendering, delivery, tickets and recording included).
The plan benchmark builds a log with at least --open pending obligations and
times, in process, a fresh evaluation and plan of the log, the engine's plan
(first call, then cached while the clock moves, then after an append: a
customer, then a rescheduled maintenance), and
the whole `forewarn plan --format json` command, first with nothing published
(it reads, evaluates and publishes), then from the published plan, next to
`forewarn --version` and the bare interpreter's start-up.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_smtp import serve_in_child

from forewarn.engine import published
from forewarn.engine.cache import EvaluationCache
from forewarn.engine.replay import MemoryDelivery
from forewarn.engine.runner import Engine
from forewarn.events import parse_lines
from forewarn.log.source import import_files, read_store
from forewarn.log.store import EventStore
from forewarn.policy.files import default_rules_dir
from forewarn.policy.loader import load_policy

T = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ZONES = [("Europe/Berlin", "DE"), ("America/Chicago", "US"), ("Asia/Tokyo", "JP"), ("UTC", None)]


def _customers(n: int) -> list[dict]:
    out = []
    for i in range(n):
        tz, country = ZONES[i % len(ZONES)]
        e = {
            "id": f"c{i}",
            "type": "customer.upserted",
            "at": "2026-01-01T00:00:00Z",
            "customer": f"cust-{i}",
            "name": f"Customer {i}",
            "plan": "enterprise",
            "timezone": tz,
            "contacts": [f"ops@cust-{i}.example"],
        }
        if country:
            e["country"] = country
        out.append(e)
    return out


def send_log(customers: int) -> list[dict]:
    at = T.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        *_customers(customers),
        {
            "id": "m",
            "type": "maintenance.scheduled",
            "at": at,
            "maintenance": "mx-1",
            "title": "Upgrade",
            "start": "2026-03-12T08:00:00Z",
            "end": "2026-03-12T10:00:00Z",
            "customers": "all",
            "impact": "degraded",
            "impact_summary": "Search may be slow",
        },
        {
            "id": "i",
            "type": "incident.declared",
            "at": at,
            "incident": "inc-1",
            "title": "Login outage",
            "severity": "critical",
            "customers": "all",
            "summary": "Users cannot log in",
        },
    ]


def plan_log(open_obligations: int, customers: int = 300) -> list[dict]:
    """Maintenances announced before T, windows after T: their notices are sent, the rest is pending."""
    events = _customers(customers)
    # per maintenance and customer: the advance notice is met, the start reminder pending
    # (the closing notice opens only once the work completes)
    for m in range(max(1, -(-open_obligations // customers))):
        start = T + timedelta(days=3, hours=m)
        scheduled = (T - timedelta(days=10) + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")
        events.append(
            {
                "id": f"m{m}",
                "type": "maintenance.scheduled",
                "at": scheduled,
                "maintenance": f"mx-{m}",
                "title": "Upgrade",
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "customers": "all",
                "impact": "interruption",
                "impact_summary": "Logins unavailable",
            }
        )
        for i in range(customers):
            cid = f"n{m}-{i}"
            events.append(
                {
                    "id": f"e-{cid}",
                    "type": "communication.sent",
                    "at": scheduled,
                    "communication": cid,
                    "customer": f"cust-{i}",
                    "to": [f"ops@cust-{i}.example"],
                    "from": "enterprise-support@example.com",
                    "kind": "advance_notice",
                    "maintenance": f"mx-{m}",
                    "subject": "s",
                    "states": {
                        "window_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "window_end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "impact": "Logins unavailable",
                    },
                }
            )
            events.append(
                {"id": f"t-{cid}", "type": "ticket.opened", "at": scheduled, "ticket": f"t-{cid}", "communication": cid}
            )
    return events


def make_db(events: list[dict], directory: Path) -> Path:
    src = directory / "log.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in sorted(events, key=lambda e: e["at"])))
    db = directory / "log.db"
    store = EventStore(db)
    import_files(store, [src], load_policy().ids)
    store.close()
    return db


def bench_send(customers: int, runs: int, pipelining: bool = True) -> None:
    rates = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            db = make_db(send_log(customers), Path(tmp))
            parent, child = mp.Pipe()
            server = mp.Process(target=serve_in_child, args=(child, pipelining))
            server.start()
            port = parent.recv()
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "forewarn.cli",
                    "run",
                    "--once",
                    "--now",
                    T.isoformat(),
                    "--db",
                    str(db),
                    "--smtp",
                    f"127.0.0.1:{port}",
                ],
                check=True,
            )
            elapsed = time.perf_counter() - started
            parent.send("stop")
            received, _cpu, connections = parent.recv() if parent.poll(10) else (None, None, None)
            server.join()
            sent = 2 * customers
            rates.append(sent / elapsed)
            print(
                f"  {sent} sends in {elapsed:.2f} s = {sent / elapsed:.0f} sends/s "
                f"(server got {received} over {connections} connection(s))"
            )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"run --once: median {statistics.median(rates):.0f} sends/s, min {min(rates):.0f}, max {max(rates):.0f}; "
        f"peak RSS of a child {peak:.0f} MiB"
    )


def _rss_mib() -> float:
    """This process's resident memory now (Linux), in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stats(label: str, seconds: list[float]) -> None:
    ms = [1000 * x for x in seconds]
    print(f"{label}: median {statistics.median(ms):.0f} ms, min {min(ms):.0f}, max {max(ms):.0f}")


def bench_plan(open_obligations: int, runs: int) -> None:
    policy = load_policy()
    with tempfile.TemporaryDirectory() as tmp:
        db = make_db(plan_log(open_obligations), Path(tmp))
        store = EventStore(db)
        events = read_store(store, T)
        plan = EvaluationCache(store, policy).get(T)[1].at(T)
        print(f"  {len(events)} events; {len(plan.due)} due, {len(plan.upcoming)} upcoming")
        fresh = []
        for _ in range(runs):
            started = time.perf_counter()
            EvaluationCache(store, policy).get(T)[1].at(T)
            fresh.append(time.perf_counter() - started)
        key = published.plan_key(default_rules_dir())
        first, hit, customer_added, rescheduled = [], [], [], []
        for run in range(runs):
            engine = Engine(store, policy, MemoryDelivery(), freeze_gc=True, publish_key=key)  # as `forewarn run` does
            started = time.perf_counter()
            engine.plan(T)
            first.append(time.perf_counter() - started)
            for minute in range(1, 6):  # the run loop: the clock moves on, nothing was appended
                started = time.perf_counter()
                engine.plan(T + timedelta(minutes=minute))
                hit.append(time.perf_counter() - started)
            at = T.strftime("%Y-%m-%dT%H:%M:%SZ")
            customer = {**_customers(1)[0], "id": f"bench-append-{run}", "at": at}  # touches no subject
            start = T + timedelta(days=4, hours=run)
            reschedule = {  # one maintenance (300 obligations) judged again
                "id": f"bench-reschedule-{run}",
                "type": "maintenance.rescheduled",
                "at": at,
                "maintenance": "mx-0",
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for minute, (event, times) in enumerate(((customer, customer_added), (reschedule, rescheduled)), 10):
                parsed, errors = parse_lines([json.dumps(event)], "<bench>")
                assert not errors, errors
                store.append(parsed)
                started = time.perf_counter()
                engine.plan(T + timedelta(minutes=minute))
                times.append(time.perf_counter() - started)
            assert engine.cache is not None and engine.cache.hits == 5 and engine.cache.misses == 3
        store.close()
        forewarn = str(Path(sys.executable).with_name("forewarn"))  # the installed program, as a user runs it
        command = [forewarn, "plan", "--db", str(db), "--as-of", T.isoformat()]
        cold, warm, table, floor, python = [], [], [], [], []
        cpu: dict[str, list[float]] = {"json": [], "table": [], "version": []}
        for _ in range(runs):
            drop = sqlite3.connect(db)
            with drop:
                drop.execute(f"DROP TABLE IF EXISTS {published.TABLE}")  # as after an append: evaluate, publish
            drop.close()
            for times, fmt, source in ((cold, "json", False), (warm, "json", True), (table, "table", True)):
                before = _children_cpu()
                started = time.perf_counter()
                done = subprocess.run([*command, "--format", fmt], check=True, capture_output=True, text=True)
                times.append(time.perf_counter() - started)
                if source:
                    cpu[fmt].append(_children_cpu() - before)
                assert ("from the plan published" in done.stderr) is source, done.stderr
            before = _children_cpu()
            started = time.perf_counter()
            subprocess.run([forewarn, "--version"], check=True, stdout=subprocess.DEVNULL)
            floor.append(time.perf_counter() - started)
            cpu["version"].append(_children_cpu() - before)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            python.append(time.perf_counter() - started)
    _stats("fresh evaluation + plan, in process", fresh)
    _stats("Engine.plan, first call (read + parse + evaluate + plan)", first)
    _stats("Engine.plan in the run loop, clock moved, nothing appended (cached)", hit)
    _stats(
        "Engine.plan after a customer was appended (new rows read, re-evaluated: no subject judged again)",
        customer_added,
    )
    _stats("Engine.plan after a maintenance was rescheduled (its 300 obligations judged again)", rescheduled)
    _stats("forewarn plan --format json, nothing published (read, evaluate, publish, print)", cold)
    _stats("forewarn plan --format json, from the published plan (the usual case)", warm)
    _stats("forewarn plan (table), from the published plan", table)
    _stats("forewarn --version (start-up + CLI import + package metadata)", floor)
    for name, label in (("json", "plan --format json"), ("table", "plan (table)"), ("version", "--version")):
        _stats(f"  CPU time (user + system) of {label}", cpu[name])
    _stats("python -c pass (interpreter start-up)", python)


def bench_appends(source: Path, runs: int) -> None:
    """The engine's plan after each append to a large log (a copy of `source`), as the run loop makes it:
    evaluated once as of the log's last event, then one event appended at a time (a new customer, then a
    communication about an existing maintenance), each followed by a plan a minute later (published)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "log.db"
        shutil.copy(source, db)
        store = EventStore(db)
        key = published.plan_key(default_rules_dir())
        engine = Engine(store, load_policy(), MemoryDelivery(), freeze_gc=True, publish_key=key)
        conn = store.db.conn
        (last,) = conn.execute("SELECT max(at) FROM events").fetchone()
        now = datetime.fromisoformat(last.replace("Z", "+00:00"))
        rss_start = _rss_mib()
        started, cpu = time.perf_counter(), time.process_time()
        _view, basis = engine.evaluation(now)
        first, first_cpu = time.perf_counter() - started, time.process_time() - cpu
        subjects = [s for (s,) in conn.execute(
            "SELECT DISTINCT subject FROM events WHERE type = 'maintenance.scheduled' ORDER BY subject")]
        (customer,) = conn.execute("SELECT customer FROM events WHERE type = 'customer.upserted' LIMIT 1").fetchone()
        (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
        assert engine.cache is not None
        print(
            f"  {events} events, {len(engine.cache._open)} open subjects kept, {len(basis.entries)} in the plan;"
            f" first evaluation {first:.1f} s ({first_cpu:.1f} s CPU), resident {rss_start:.0f} MiB before,"
            f" {_rss_mib():.0f} MiB after, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )
        time.sleep(2)  # the allocator returns freed pages as they age
        print(f"  resident {_rss_mib():.0f} MiB two seconds after the first evaluation")
        times: dict[str, list[float]] = {"customer": [], "communication": []}
        rss_before = _rss_mib()
        rss_along: list[float] = []
        for n in range(runs):
            now += timedelta(minutes=1)
            at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            new_customer = {**_customers(1)[0], "id": f"bench-c-{n}", "customer": f"bench-{n}", "at": at}
            comm = {
                "id": f"bench-m-{n}",
                "type": "communication.sent",
                "at": at,
                "communication": f"bench-m-{n}",
                "customer": customer,
                "to": ["ops@example.com"],
                "from": "enterprise-support@example.com",
                "kind": "other",
                "maintenance": subjects[n % len(subjects)],
                "subject": "note",
            }
            for name, event in (("customer", new_customer), ("communication", comm)):
                parsed, errors = parse_lines([json.dumps(event)], "<bench>")
                assert not errors, errors
                store.append(parsed)
                now += timedelta(seconds=1)
                started = time.perf_counter()
                engine.plan(now)
                times[name].append(time.perf_counter() - started)
            if n % max(1, runs // 10) == 0:
                rss_along.append(_rss_mib())
        rss_after = _rss_mib()
        store.close()
    print(
        f"  resident memory {rss_before:.0f} MiB before the appends, {rss_after:.0f} MiB after {2 * runs}"
        f" (along the way: {', '.join(f'{x:.0f}' for x in rss_along)})"
    )
    _stats("Engine.plan after a customer was appended", times["customer"])
    _stats("Engine.plan after a communication about one maintenance was appended", times["communication"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plan", action="store_true", help="benchmark plan instead of run")
    parser.add_argument("--open", type=int, default=10_000, help="pending obligations for --plan")
    parser.add_argument(
        "--appends-on",
        metavar="DB",
        type=Path,
        help="benchmark the plan after appends to a copy of this log (e.g. a synth --size year log)",
    )
    parser.add_argument(
        "--no-pipelining",
        dest="pipelining",
        action="store_false",
        help="the SMTP server does not announce PIPELINING (4 round trips per message, not 2)",
    )
    args = parser.parse_args()
    if args.appends_on:
        bench_appends(args.appends_on, args.runs)
    elif args.plan:
        bench_plan(args.open, args.runs)
    else:
        bench_send(args.customers, args.runs, args.pipelining)


if __name__ == "__main__":
    main()

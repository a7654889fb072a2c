"""Benchmark `forewarn serve` over HTTP on loopback: events/s accepted in batches, the latency of one-event
POSTs at a steady rate, and the time from a critical incident posted to its mail accepted by an SMTP server.

    .venv/bin/python bench/bench_serve.py [--events 50000] [--clients 8] [--rate 100] [--seconds 10]

Targets: >= 20,000 events/s in batches of 100; p99 <= 50 ms for one event at 100 requests/s; incident to
mail <= 2 s. The service runs in a child process (`forewarn serve`); clients and the SMTP sink (aiosmtpd)
run here, on the same machine (they take CPU from the service: the figures are a lower bound).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from aiosmtpd.controller import Controller

WRITER = "bench-writer"
READER = "bench-reader"


class Sink:
    """Accepts every message; notes when each arrived."""

    def __init__(self) -> None:
        self.arrived: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.append(time.monotonic())
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def customer(ident: str, plan: str) -> dict[str, Any]:
    """Of now, as a live feed's events are (an event older than the log's latest makes the engine evaluate
    the log afresh rather than in part)."""
    return {"id": f"c-{ident}", "type": "customer.upserted", "at": utc(datetime.now(UTC)), "customer": ident,
            "name": ident, "plan": plan, "timezone": "Europe/Berlin", "contacts": [f"ops@{ident}.example"]}


def incident(ident: str, cust: str, severity: str) -> dict[str, Any]:
    return {"id": f"i-{ident}", "type": "incident.declared", "at": utc(datetime.now(UTC)), "incident": ident,
            "title": f"Incident {ident}", "severity": severity, "customers": [cust], "summary": "Errors"}


def start_service(tmp: Path, smtp_port: int) -> tuple[subprocess.Popen[bytes], str]:
    forewarn = str(Path(sys.executable).parent / "forewarn")
    seed = tmp / "seed.jsonl"
    seed.write_text(json.dumps(customer("bench-enterprise", "enterprise")) + "\n")
    db = tmp / "bench.db"
    subprocess.run([forewarn, "import", str(seed), "--db", str(db)], check=True, capture_output=True)
    port = free_port()
    env = {**os.environ, "FOREWARN_API_TOKENS": f"writer:{WRITER},reader:{READER}"}
    proc = subprocess.Popen(
        [forewarn, "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}", "--smtp", f"127.0.0.1:{smtp_port}",
         "--poll", "300", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "wb"), env=env,  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"serve did not become ready: {(tmp / 'serve.log').read_text()[-2000:]}")


TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of `pid` and of its child processes, by name: `PID/main`
    for a process's main thread, `PID/TID` for the others."""
    out: dict[str, float] = {}
    children = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [pid] + [int(c) for c in children.read_text().split()] if children.exists() else [pid]
    for p in pids:
        for task in Path(f"/proc/{p}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            name = f"{p}/main" if int(task.name) == p else f"{p}/{task.name}"
            out[name] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def cpu_report(before: dict[str, float], after: dict[str, float], events: int, service: int) -> str:
    """µs per event of each thread that worked (>= 1 µs/event), summed per process."""
    lines = []
    per_process: dict[str, float] = {}
    for name, seconds in sorted(after.items()):
        spent = seconds - before.get(name, 0.0)
        process = name.split("/")[0]
        per_process[process] = per_process.get(process, 0.0) + spent
        if 1e6 * spent / events >= 1:
            lines.append(f"    {name}: {1e6 * spent / events:.1f} µs/event")
    for process, spent in per_process.items():
        role = "the service (API)" if int(process) == service else "its child process (the engine)"
        if 1e6 * spent / events < 1:
            continue
        lines.append(f"  {role} {process}: {1e6 * spent / events:.1f} µs/event")
    return "\n".join(lines)


def throughput(url: str, total: int, clients: int, batch: int = 100) -> float:
    """Events/s accepted: `clients` threads posting batches (a basic customer and its minor incidents each:
    validated, checked and appended, no mail). Each batch is made just before it is posted, with events of
    that moment, as a live feed's are (batches made ahead and posted out of order would be late events,
    which make the engine evaluate the log afresh)."""
    bodies = list(range(total // batch))
    lock = threading.Lock()
    appended = 0

    def make(b: int) -> bytes:
        cust = f"tp-{b}"
        events = [customer(cust, "basic")] + [incident(f"{cust}-{i}", cust, "minor") for i in range(batch - 1)]
        return json.dumps(events).encode()

    def client() -> None:
        nonlocal appended
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {WRITER}",
                                                 "Content-Type": "application/json"}, timeout=120) as c:
            while True:
                with lock:
                    if not bodies:
                        return
                    body = make(bodies.pop(0))
                r = c.post("/v1/events", content=body)
                r.raise_for_status()
                with lock:
                    appended += r.json()["appended"]

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert appended == (total // batch) * batch, appended
    return appended / elapsed


def latency(url: str, rate: float, seconds: float) -> list[float]:
    """Milliseconds from each request's scheduled time (not its actual start: a late start counts) to its
    answer, one event per request, at `rate` requests/s."""
    n = int(rate * seconds)
    bodies = [json.dumps([customer(f"lat-{i}", "basic")]).encode() for i in range(n)]
    out: list[float] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {WRITER}",
                                             "Content-Type": "application/json"}, timeout=30) as c:
        c.get("/healthz")
        start = time.perf_counter()
        for i, body in enumerate(bodies):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            c.post("/v1/events", content=body).raise_for_status()
            out.append(1000 * (time.perf_counter() - due))
    return out


def incident_to_mail(url: str, sink: Sink, runs: int) -> list[float]:
    """Seconds from posting a critical incident (for an enterprise customer) to its mail accepted."""
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {WRITER}"}, timeout=30) as c:
        for i in range(runs):
            before = len(sink.arrived)
            posted = time.monotonic()
            c.post("/v1/events", json=[incident(f"crit-{i}-{time.time_ns()}", "bench-enterprise", "critical")]
                   ).raise_for_status()
            while len(sink.arrived) == before and time.monotonic() - posted < 30:
                time.sleep(0.002)
            out.append(sink.arrived[before] - posted if len(sink.arrived) > before else float("inf"))
            time.sleep(0.3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--incidents", type=int, default=10)
    args = parser.parse_args()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        proc, url = start_service(Path(tmp), controller.port)
        try:
            mails = incident_to_mail(url, sink, args.incidents)
            print(f"incident -> mail accepted: median {statistics.median(mails):.3f} s, max {max(mails):.3f} s "
                  f"over {len(mails)} (target <= 2 s)")
            ms = latency(url, args.rate, args.seconds)
            q = statistics.quantiles(ms, n=100)
            print(f"one-event POST at {args.rate:.0f}/s for {args.seconds:.0f} s: p50 {q[49]:.1f} ms, "
                  f"p99 {q[98]:.1f} ms, max {max(ms):.1f} ms (target p99 <= 50 ms)")
            before, mine = cpu_by_thread(proc.pid), os.times()
            load = os.getloadavg()
            rate = throughput(url, args.events, args.clients)
            after, mine_after = cpu_by_thread(proc.pid), os.times()
            print(f"batches of 100 from {args.clients} clients: {rate:,.0f} events/s accepted "
                  f"({args.events:,} events) (target >= 20,000/s); load average {load[0]:.2f} before, "
                  f"{os.getloadavg()[0]:.2f} after")
            print("CPU per event appended (user + system):")
            print(cpu_report(before, after, args.events, proc.pid))
            clients_cpu = (mine_after.user + mine_after.system) - (mine.user + mine.system)
            print(f"  the bench's clients: {1e6 * clients_cpu / args.events:.1f} µs/event")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            controller.stop()


if __name__ == "__main__":
    main()

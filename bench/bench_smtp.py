"""Benchmark: render N synthetic drafts and deliver them over one SMTP connection to a loopback aiosmtpd."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiosmtpd.controller import Controller

from forewarn.engine.delivery import SmtpDelivery
from forewarn.engine.draft import Draft, Invitation
from forewarn.engine.render import render

ZONES = ("Europe/Paris", "America/Chicago", "Asia/Tokyo", "UTC", "Australia/Sydney")
KINDS = ("advance_notice", "start_reminder", "extension", "closing", "emergency", "incident")


class CountingHandler:
    """Accepts every message and only counts it (the server should not be the bottleneck)."""

    def __init__(self, pipelining: bool = True) -> None:
        self.count = 0
        self.greetings = 0  # EHLO / HELO: one per connection
        self.pipelining = pipelining

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """aiosmtpd answers pipelined commands in order but does not announce PIPELINING (RFC 2920)
        itself; like most MTAs, this server does (unless told not to)."""
        self.greetings += 1
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_HELO(self, server: Any, session: Any, envelope: Any, hostname: str) -> str:
        self.greetings += 1
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


class LoopbackController(Controller):
    """aiosmtpd on 127.0.0.1 with an OS-chosen port."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def start_server(handler: CountingHandler) -> LoopbackController:
    controller = LoopbackController(handler, hostname="127.0.0.1", port=0, server_hostname="localhost")
    controller.start()
    return controller


def serve_in_child(pipe: Connection, pipelining: bool = True) -> None:
    """Child process: run the server until told to stop, then report the count."""
    handler = CountingHandler(pipelining)
    controller = start_server(handler)
    cpu = time.process_time()
    pipe.send(controller.port)
    pipe.recv()
    pipe.send((handler.count, time.process_time() - cpu, handler.greetings))
    controller.stop()


def synthetic_drafts(n: int) -> list[Draft]:
    """N varied drafts: kinds, zones, 1-3 recipients, invitations on maintenance notices.

    As in real runs, each of 50 maintenances (one window each) goes to many customers."""
    base = datetime(2026, 3, 10, 8, tzinfo=UTC)
    drafts = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        start = base + timedelta(hours=7 * (i % 50))
        end = start + timedelta(hours=2)
        states: dict[str, object] = {
            "window_start": start,
            "window_end": end,
            "impact": "Search and uploads may be slow",
        }
        if kind == "extension":
            states = {"reason": "Index rebuild is slower than planned", "end": end + timedelta(hours=1)}
        elif kind in ("closing", "incident"):
            states = {}
        invitation = None
        if kind in ("advance_notice", "start_reminder", "extension", "emergency"):
            invitation = Invitation(
                uid=f"mx-{i % 50}@forewarn",
                sequence=i % 3,
                method="REQUEST",
                start=start,
                end=end,
                summary=f"Maintenance mx-{i % 50}",
            )
        drafts.append(
            Draft(
                communication=f"fw-{i:06d}",
                message_id=f"<fw-{i:06d}@example.com>",
                kind=kind,
                subject_kind="incident" if kind == "incident" else "maintenance",
                subject=f"mx-{i % 50}",
                subject_title=f"Database cluster upgrade {i % 50}",
                customer=f"customer-{i % 400}",
                customer_name=f"Customer {i % 400}",
                timezone=ZONES[i % len(ZONES)],
                sender="enterprise-support@example.com",
                to=tuple(f"ops{j}@customer-{i % 400}.example" for j in range(1 + i % 3)),
                support_contact="enterprise-support@example.com",
                states=states,
                context={"severity": "critical", "summary": "Patch for a critical vulnerability"},
                invitation=invitation,
                policy_digest="sha256:0123456789abcdef",
            )
        )
    return drafts


def one_run(drafts: list[Draft], port: int) -> tuple[float, float, float, float]:
    """(render+deliver, render only, deliver only) in messages per second, and this
    process's CPU seconds per message in the render+deliver loop."""
    t0 = time.perf_counter()
    messages = [render(d, datetime.now(UTC)) for d in drafts]
    t1 = time.perf_counter()
    with SmtpDelivery("127.0.0.1", port, local_hostname="localhost") as delivery:
        t2 = time.perf_counter()
        for msg in messages:
            delivery.deliver(msg)
        t3, cpu = time.perf_counter(), time.process_time()
        for d in drafts:  # the engine's real loop: render, then deliver, one by one
            delivery.deliver(render(d, datetime.now(UTC)))
        t4, cpu = time.perf_counter(), time.process_time() - cpu
    n = len(drafts)
    return n / (t4 - t3), n / (t1 - t0), n / (t3 - t2), cpu / n


def describe(label: str, rates: list[float]) -> str:
    return f"{label:<28} median {statistics.median(rates):7.0f} msg/s   min {min(rates):7.0f}   max {max(rates):7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="drafts per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--same-process", action="store_true", help="run aiosmtpd in a thread of this process (shares the GIL)"
    )
    parser.add_argument(
        "--no-pipelining",
        dest="pipelining",
        action="store_false",
        help="the server does not announce PIPELINING: 4 round trips per message, not 2",
    )
    args = parser.parse_args()

    drafts = synthetic_drafts(args.n)
    if args.same_process:
        handler = CountingHandler(args.pipelining)
        controller = start_server(handler)
        port, child, pipe = controller.port, None, None
    else:
        pipe, child_end = mp.Pipe()
        child = mp.get_context("fork").Process(target=serve_in_child, args=(child_end, args.pipelining), daemon=True)
        child.start()
        port = pipe.recv()

    render(drafts[0], datetime.now(UTC))  # warm-up: template compilation
    results = [one_run(drafts, port) for _ in range(args.runs)]

    server_cpu = None
    if pipe is not None and child is not None:
        pipe.send("stop")
        received, server_cpu, _greetings = pipe.recv()
        child.join(10)
    else:
        received = handler.count
        controller.stop()
    expected = 2 * args.n * args.runs
    server = "same process (thread)" if args.same_process else "separate process"
    print(
        f"{args.n} drafts x {args.runs} runs, aiosmtpd on 127.0.0.1 ({server}), "
        f"one SMTP connection per run, {'with' if args.pipelining else 'without'} PIPELINING; "
        f"server received {received}/{expected}"
    )
    print(describe("render + deliver, in turn", [r[0] for r in results]))
    print(describe("render only", [r[1] for r in results]))
    print(describe("deliver only (pre-rendered)", [r[2] for r in results]))
    client_us = statistics.median(r[3] for r in results) * 1e6
    line = f"CPU per message: engine side (render + smtplib) {client_us:.0f} us"
    if server_cpu is not None:
        line += f", aiosmtpd server {server_cpu / received * 1e6:.0f} us"
    print(line)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS (this process): {peak_kb / 1024:.1f} MiB")
    if received != expected:
        sys.exit(1)


if __name__ == "__main__":
    main()

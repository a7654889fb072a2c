"""A `forewarn serve` for tests: the real service (uvicorn, the engine's process) on loopback, in this process or
in a child process, an SMTP sink, and events to post."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from test_delivery import Collector, LoopbackController

from forewarn.engine.delivery import OutboxDirectory, SmtpDelivery
from forewarn.log.store import open_store
from forewarn.policy.loader import load_policy
from forewarn.program import rules_key
from forewarn.serve import make_server
from forewarn.service import Service, Settings, Tokens, no_webhook

POLICY = load_policy()
WRITER, READER = "w-token-123", "r-token-456"
TOKENS = f"writer:{WRITER},reader:{READER}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def customer(ident: str, plan: str = "enterprise", at: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {"id": f"c-{ident}", "type": "customer.upserted", "at": at, "customer": ident, "name": ident.title(),
            "plan": plan, "timezone": "Europe/Berlin", "country": "DE", "contacts": [f"ops@{ident}.example"]}


def incident(ident: str, customers: list[str], severity: str = "critical", at: datetime | None = None
             ) -> dict[str, Any]:
    return {"id": f"i-{ident}", "type": "incident.declared", "at": utc(at or datetime.now(UTC)), "incident": ident,
            "title": f"Incident {ident}", "severity": severity, "customers": customers,
            "summary": "Elevated error rates"}


def make_db(path: Path, events: list[dict[str, Any]]) -> Path:
    store = open_store(path)
    from forewarn.log.source import import_files

    lines = path.with_suffix(".seed.jsonl")
    lines.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    if events:
        import_files(store, [lines], POLICY.ids)
    store.close()
    return path


class Sink:
    """A loopback SMTP server that accepts every message."""

    def __init__(self) -> None:
        self.collector = Collector()
        self.controller = LoopbackController(self.collector)
        self.controller.start()
        self.port = int(self.controller.port)

    @property
    def messages(self) -> list[tuple[str, list[str], bytes, str]]:
        return self.collector.messages

    def message_ids(self) -> list[str]:
        from email import message_from_bytes

        return [str(message_from_bytes(m[2])["Message-ID"]) for m in list(self.messages)]

    def stop(self) -> None:
        self.controller.stop()


class InProcess:
    """The service in this process: uvicorn on a thread, the engine in its child process."""

    def __init__(self, db: Path, *, insecure: bool = False, max_body: int = 16 << 20, smtp_port: int | None = None,
                 outbox: Path | None = None, poll: float = 300.0, engine: bool = True) -> None:
        # Partials of the classes: the engine's process receives them pickled.
        delivery: Callable[[], Any] = (
            functools.partial(SmtpDelivery, "127.0.0.1", smtp_port, local_hostname="localhost", timeout=10.0)
            if smtp_port is not None
            else functools.partial(OutboxDirectory, outbox or db.parent / "outbox", fsync=False)
        )
        settings = Settings(
            db=str(db), rules_dir=None, policy=POLICY, plan_key=rules_key(None),
            tokens=Tokens([("writer", WRITER), ("reader", READER)]), insecure=insecure, max_body=max_body,
            poll=poll, make_delivery=delivery, make_webhook=no_webhook,
        )
        self.service = Service(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(self.service, "127.0.0.1", self.port)
        if engine:
            self.service.start_engine()
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)

    def client(self, token: str | None = READER, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.service.shutdown()


class Child:
    """`forewarn serve` as a child process (to be killed)."""

    def __init__(self, db: Path, outbox: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "FOREWARN_API_TOKENS": TOKENS}
        delivery = () if "--smtp" in extra else ("--outbox", str(outbox))
        self.log = open(db.parent / f"serve-{self.port}-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "forewarn"), "serve", "--db", str(db),
             "--listen", f"127.0.0.1:{self.port}", *delivery, "--poll", "300", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {(db.parent / self.log.name).read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code


def batches(prefix: str, n_batches: int, size: int, enterprise_every: int = 0) -> Iterator[list[dict[str, Any]]]:
    """Self-contained batches (a customer and incidents about it, so batches may land in any order); every
    `enterprise_every`-th batch's customer is enterprise with one critical incident (one mail), the rest
    basic customers' minor incidents (no mail)."""
    for b in range(n_batches):
        now = datetime.now(UTC)  # as a live feed does: events of now, after those of the log
        cust = f"{prefix}-{b}"
        mail = bool(enterprise_every) and b % enterprise_every == 0
        events = [customer(cust, "enterprise" if mail else "basic", at=utc(now))]
        for i in range(size - 1):
            severity = "critical" if mail and i == 0 else "minor"
            events.append(incident(f"{cust}-{i}", [cust], severity, at=now))
        yield events

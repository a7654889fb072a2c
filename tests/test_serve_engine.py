"""`forewarn serve`'s engine in a process of its own: supervised by the service (started again if it dies,
readiness and metrics from it), and gone with the service (a kill -9 of the service ends it)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from serving import POLICY, READER, WRITER, Child, InProcess, customer, make_db

BASE = [customer("acme", at="2026-01-01T00:00:00Z")]


def wait_for(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_the_policy_reaches_the_engine_process_as_loaded() -> None:
    """Sent as the loader made it, whatever it compiled and cached since (closures do not pickle)."""
    import pickle
    from multiprocessing.reduction import ForkingPickler

    import forewarn.engine_process  # noqa: F401 - registers how the policy travels

    acme = type("Version", (), {"plan": "enterprise", "labels": {}})()
    assert POLICY.covers(acme)  # compiled and cached now
    sent = pickle.loads(ForkingPickler.dumps(POLICY))
    assert sent == POLICY and sent.ids == POLICY.ids and sent.covers(acme)
    assert not sent.covers(type("Version", (), {"plan": "basic", "labels": {}})())


def passes(running: InProcess) -> float:
    with running.client(READER) as c:
        text = c.get("/metrics").text
    return next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("forewarn_engine_passes_total "))


def test_the_engine_runs_in_its_own_process_and_is_started_again_if_it_dies(tmp_path: Path) -> None:
    running = InProcess(make_db(tmp_path / "log.db", BASE))
    try:
        wait_for(lambda: httpx.get(running.url + "/readyz").status_code == 200)
        first = running.service.engine.pid
        assert first is not None and first != os.getpid()
        assert passes(running) >= 1  # the figures of the child's passes reach /metrics
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not running.service.engine.alive() or running.service.engine.pid != first)
        r = httpx.get(running.url + "/readyz")
        assert r.status_code == 503 or running.service.engine.pid != first  # not ready until the new one's pass
        wait_for(lambda: httpx.get(running.url + "/readyz").status_code == 200)
        second = running.service.engine.pid
        assert second not in (None, first)
        before = passes(running)
        with running.client(WRITER) as w:  # the new process is woken by the service's posts
            assert w.post("/v1/events", json=[customer("globex", plan="basic")]).json()["appended"] == 1
        wait_for(lambda: passes(running) > before, timeout=30)
        assert running.service.engine_error is None
    finally:
        running.stop()
    assert not running.service.engine.alive()  # stopped with the service


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def engine_pid(child: Child) -> int:
    """The engine's process among the service's children (the one that holds the log open)."""
    for pid in children(child.proc.pid):
        try:
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text() and "resource_tracker" not in Path(
                f"/proc/{pid}/cmdline"
            ).read_text():
                return pid
        except OSError:
            continue
    raise AssertionError(f"no engine process among {children(child.proc.pid)}")


def test_a_kill_9_of_the_service_ends_its_engine(tmp_path: Path) -> None:
    db = make_db(tmp_path / "log.db", BASE)
    child = Child(db, tmp_path / "outbox")
    wait_for(lambda: httpx.get(child.url + "/readyz").status_code == 200)
    engine = engine_pid(child)
    child.kill()

    def gone() -> bool:
        try:
            state = Path(f"/proc/{engine}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        return state == "Z"  # ended (a zombie until init reaps it)

    wait_for(gone, timeout=30)
    child = Child(db, tmp_path / "outbox")  # and the log is served again
    try:
        wait_for(lambda: httpx.get(child.url + "/readyz").status_code == 200)
    finally:
        assert child.stop() == 0

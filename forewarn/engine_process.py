"""The engine of `forewarn serve` in a process of its own, started and supervised by the service.

The API's process and the engine's share no interpreter lock: each has a core for its Python work.
They share the log (SQLite WAL: the engine's connection sees the API's commits through PRAGMA data_version)
and two pipes: the service's wake-ups and its stop go one way; the figures of each pass (for /metrics and
/readyz) and the engine's failure come back the other. The engine's log lines go to the service's stderr,
in its format. The engine process ends as soon as the service is gone (its pipe closes): a kill -9 of the
service takes its engine with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, TypeVar

from forewarn.policy.conditions import Condition
from forewarn.policy.model import Policy, Rule

log = logging.getLogger("forewarn.serve")
T = TypeVar("T")

WAKE = b"w"
STOP = b"s"
EXIT_FAILED = 3
RESTARTS = 5
"""Deaths of the engine process (not its own failure: a signal, the OOM killer) after which the service
gives up (and exits 3) rather than start it again, within RESTART_WINDOW seconds."""
RESTART_WINDOW = 300.0
RESTART_DELAY = 1.0
STOP_TIMEOUT = 30.0


def _rebuilt(cls: type[T], values: dict[str, Any]) -> T:
    return cls(**values)


def _reduce_fields(obj: Any) -> tuple[Any, ...]:
    """The policy travels as its fields (what the loader gave): what it compiled and cached since (closures,
    tables keyed by id()) is made again in the engine's process."""
    return _rebuilt, (type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init})


for _cls in (Policy, Rule, Condition):
    ForkingPickler.register(_cls, _reduce_fields)


@dataclass(frozen=True)
class EngineSpec:
    """What the engine process needs, sent to it when it starts (pickled: the factories are partials of
    importable classes; the API's tokens are not in it)."""

    db: str
    policy: Policy
    plan_key: str | None
    make_delivery: Callable[[], Any]
    make_webhook: Callable[[], Any]
    destination: str
    poll: float
    pass_deadline: float | None
    give_up_after: int
    min_interval: float
    templates_dir: str | None = None
    log_format: str = "plain"
    watch: float | None = None  # engine.runner.WATCH of the service's process; None: the module's own


def figures(result: Any) -> dict[str, Any]:
    """What the service's metrics take of a pass."""
    plan = result.plan
    out: dict[str, Any] = {"sent": len(result.sent), "failed": len(result.failed),
                           "evaluation_seconds": result.evaluation_seconds}
    if plan is not None:
        out.update(due=len(plan.due), upcoming=len(plan.upcoming), alerts=len(plan.alerts))
    return out


def engine_main(spec: EngineSpec, commands: Connection, reports: Connection) -> None:
    """The engine process: `run`'s loop on the service's log until told to stop, or the service is gone."""
    from forewarn import logs
    from forewarn.engine import runner
    from forewarn.engine.render import use_templates
    from forewarn.engine.runner import Engine
    from forewarn.service import _open, report_pass

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the service stops it
    logs.setup(spec.log_format)
    if spec.watch is not None:
        runner.WATCH = spec.watch
    stop = threading.Event()
    engines: list[Engine] = []

    def wake() -> None:
        for engine in engines:
            engine.wake()

    def on_term(*_: Any) -> None:
        stop.set()
        wake()

    signal.signal(signal.SIGTERM, on_term)

    def listen() -> None:
        while True:
            try:
                command = commands.recv_bytes()
            except (EOFError, OSError):  # the service is gone (killed): its engine goes with it, as a crash
                log.error("the service is gone: its engine stops", extra={"fields": {"event": "engine_orphaned"}})
                os._exit(EXIT_FAILED)
            if command == STOP:
                on_term()
                return
            wake()

    threading.Thread(target=listen, name="forewarn-engine-commands", daemon=True).start()

    def report(result: Any) -> None:
        report_pass(result)
        reports.send({"pass": figures(result)})

    delivery = webhook = store = None
    try:
        if spec.templates_dir is not None:
            use_templates(spec.templates_dir)
        store = _open(spec.db)
        delivery = spec.make_delivery()
        webhook = spec.make_webhook()
        engine = Engine(
            store, spec.policy, delivery, webhook, freeze_gc=True, publish_key=spec.plan_key,
            pass_deadline=spec.pass_deadline, give_up_after=spec.give_up_after, destination=spec.destination,
        )
        engines.append(engine)
        log.info("engine started", extra={"fields": {"event": "engine", "db": spec.db, "pid": os.getpid()}})
        engine.run_forever(poll=spec.poll, stop=stop, report=report, handle_signals=False,
                           min_interval=spec.min_interval)
    except Exception as exc:
        log.exception("the engine stopped", extra={"fields": {"event": "engine_failed"}})
        with contextlib.suppress(OSError):  # the service may be gone: the error above is the one to keep
            reports.send({"error": f"{type(exc).__name__}: {exc}"})
        sys.exit(EXIT_FAILED)
    finally:
        if delivery is not None:
            delivery.close()
        if webhook is not None:
            webhook.close()
        if store is not None:
            store.close()


class EngineProcess:
    """The service's side: starts the engine process, wakes it, hands its figures to `on_pass`, starts it
    again if it dies (a signal, the OOM killer), and calls `on_failure(reason)` if the engine fails (its own
    error) or dies more than RESTARTS times in RESTART_WINDOW seconds."""

    def __init__(self, spec: EngineSpec, on_pass: Callable[[dict[str, Any]], None],
                 on_failure: Callable[[str], None], on_restart: Callable[[], None] = lambda: None,
                 stopping: threading.Event | None = None) -> None:
        """`stopping`: set when the service stops (a signal's handler may set it before `stop()` is called):
        the engine process is then not started again."""
        self.spec = spec
        self.on_pass = on_pass
        self.on_failure = on_failure
        self.on_restart = on_restart
        self.stopping = stopping or threading.Event()
        self._context = multiprocessing.get_context("spawn")  # no fork of a process with the API's threads
        self._lock = threading.Lock()
        self._process: Any = None
        self._commands: Connection | None = None
        self._reports: Connection | None = None
        self._deaths: list[float] = []
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def alive(self) -> bool:
        process = self._process
        return process is not None and process.is_alive()

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._supervise, name="forewarn-engine-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> bool:
        """Start the engine process, unless the service is stopping (then False)."""
        with self._lock:  # stop() sets `stopping` under it: either it finds this process, or none is started
            if self.stopping.is_set():
                return False
            commands_in, commands_out = self._context.Pipe(duplex=False)
            reports_in, reports_out = self._context.Pipe(duplex=False)
            process = self._context.Process(target=engine_main, args=(self.spec, commands_in, reports_out),
                                            name="forewarn-engine")
            process.start()
            commands_in.close()  # the child's ends only in the child: each side sees the pipe close if the other dies
            reports_out.close()
            self._process, self._commands, self._reports = process, commands_out, reports_in
            return True

    def wake(self) -> None:
        """Cut the engine's sleep short (from any thread): something was appended."""
        self._send(WAKE)

    def _send(self, command: bytes) -> None:
        with self._lock:
            if self._commands is None:
                return
            with contextlib.suppress(OSError):  # the process is gone; the next one reads the log anew
                self._commands.send_bytes(command)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Let the engine finish its pass and end; killed if it has not within `timeout` seconds."""
        with self._lock:
            self.stopping.set()
        self._send(STOP)
        process = self._process
        if process is not None:
            process.join(timeout)
            if process.is_alive():
                log.error("the engine did not stop in time: killed", extra={"fields": {"event": "engine_killed"}})
                process.kill()
                process.join()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            for conn in (self._commands, self._reports):
                if conn is not None:
                    conn.close()
            self._commands = self._reports = None

    def _supervise(self) -> None:
        while True:
            process, reports = self._process, self._reports
            assert reports is not None
            error = None
            open_ = True
            while True:
                ready = wait([reports, process.sentinel] if open_ else [process.sentinel])
                if open_ and reports in ready:
                    try:
                        message = reports.recv()
                    except (EOFError, OSError):
                        open_ = False
                        continue
                    if "pass" in message:
                        self.on_pass(message["pass"])
                    elif "error" in message:
                        error = message["error"]
                    continue
                break
            process.join()
            if self.stopping.is_set():
                return
            with self._lock:  # this process's pipes and handle: a service restarting its engine keeps no dead ones
                for conn in (self._commands, self._reports):
                    if conn is not None:
                        conn.close()
                self._commands = self._reports = None
                self._process = None  # its handle (and sentinel) freed with the last reference to it
            if error is not None:
                self.on_failure(error)
                return
            now = time.monotonic()
            self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW] + [now]
            reason = f"the engine process ended unexpectedly (exit status {process.exitcode})"
            if len(self._deaths) > RESTARTS:
                log.error(reason, extra={"fields": {"event": "engine_failed", "exitcode": process.exitcode}})
                self.on_failure(f"{reason}, {len(self._deaths)} times in {RESTART_WINDOW:.0f} s")
                return
            log.error(f"{reason}: started again", extra={"fields": {"event": "engine_restart",
                                                                    "exitcode": process.exitcode}})
            self.on_restart()
            if self.stopping.wait(RESTART_DELAY) or not self._spawn():
                return

"""Group commit of `forewarn serve`'s appends: the posts waiting for the writer share one transaction, each
all-or-nothing in a savepoint of its own, each answered only after that transaction is committed."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from serving import POLICY, READER, WRITER, customer, incident, make_db

from forewarn.log.bulk import import_validated, validate_lines
from forewarn.log.store import open_store
from forewarn.log.verify import verify
from forewarn.service import Problem, Service, Settings, Tokens


def service(db: Path) -> Service:
    return Service(Settings(
        db=str(db), rules_dir=None, policy=POLICY, plan_key=None,
        tokens=Tokens([("writer", WRITER), ("reader", READER)]), insecure=False, max_body=1 << 20, poll=300.0,
        make_delivery=lambda: None, make_webhook=lambda: None,
    ))


def body(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def payloads(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        return [orjson.loads(p) for (p,) in conn.execute("SELECT payload FROM events ORDER BY seq")]
    finally:
        conn.close()


def test_posts_waiting_together_are_one_commit_each_all_or_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = make_db(tmp_path / "log.db", [customer("acme")])
    svc = service(db)
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the writer waits for the log: the posts after the first queue up
    caplog.set_level(logging.INFO, logger="forewarn.serve")
    try:
        first = svc.append(body(customer("first")), False)
        time.sleep(0.3)  # the writer holds `first` and waits for the lock
        globex = customer("globex")
        posted = [
            svc.append(body(globex), False),
            svc.append(body(customer("ok"), incident("x", ["nobody"])), False),  # a dangling reference
            svc.append(body(globex), False),  # the same event again: a duplicate of the one just before
            svc.append(b"\n".join(orjson.dumps(e) for e in (incident("y", ["globex"]),)), True),  # refers to it
            svc.append(body({**globex, "name": "Other"}), False),  # the same id, other content
        ]
        time.sleep(0.2)
        assert not first.done() and not any(f.done() for f in posted)  # nothing answered before its commit
    finally:
        lock.rollback()
        lock.close()
    assert first.result(timeout=30)["appended"] == 1
    results: list[Any] = []
    for future in posted:
        try:
            results.append(future.result(timeout=30))
        except Problem as exc:
            results.append(exc)
    assert results[0] == {"appended": 1, "duplicates": 0, "seq": 3}
    assert isinstance(results[1], Problem) and results[1].status == 422
    assert "nobody" in results[1].errors[0]["message"] and results[1].errors[0]["index"] == 1
    assert results[2] == {"appended": 0, "duplicates": 1, "seq": 3}
    assert results[3] == {"appended": 1, "duplicates": 0, "seq": 4}
    assert isinstance(results[4], Problem) and results[4].errors[0]["field"] == "id"
    svc.shutdown()
    assert [e["id"] for e in payloads(db)] == ["c-acme", "c-first", "c-globex", "i-y"]  # nothing of the refused
    verdict = verify(db)
    assert verdict.intact and verdict.events == 4  # the chain runs through the savepoints' rows
    groups = [r.fields["group"] for r in caplog.records if getattr(r, "fields", {}).get("event") == "append"]
    assert groups == [1, 5, 5, 5]  # the five waiting posts were one transaction


def test_a_failing_commit_answers_every_post_of_its_group_with_the_failure(tmp_path: Path) -> None:
    db = make_db(tmp_path / "log.db", [customer("acme")])
    svc = service(db)
    svc.append(body(customer("warm")), False).result(timeout=30)  # the writer is running
    real = svc._append_group

    def failing(store: Any, group: list[Any]) -> None:
        def commit() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        store.commit = commit
        try:
            real(store, group)
        finally:
            del store.commit

    svc._append_group = failing  # type: ignore[method-assign]
    future = svc.append(body(customer("lost")), False)
    with pytest.raises(sqlite3.OperationalError):
        future.result(timeout=30)
    svc._append_group = real  # type: ignore[method-assign]
    assert svc.append(body(customer("after")), False).result(timeout=30)["appended"] == 1
    svc.shutdown()
    assert [e["id"] for e in payloads(db)] == ["c-acme", "c-warm", "c-after"]  # the failed group left nothing


def test_a_nested_import_is_a_savepoint_of_the_callers_transaction(tmp_path: Path) -> None:
    db = make_db(tmp_path / "log.db", [customer("acme")])
    store = open_store(db)
    good = validate_lines([orjson.dumps(customer("globex"))], "<request>")
    bad = validate_lines([orjson.dumps(incident("x", ["nobody"]))], "<request>")
    with pytest.raises(RuntimeError, match="transaction"):
        import_validated(store, good, "<request>", POLICY.ids, nested=True)
    store.begin_exclusive()
    assert import_validated(store, good, "<request>", POLICY.ids, nested=True)[:2] == (1, 0)
    appended, _, errors = import_validated(store, bad, "<request>", POLICY.ids, nested=True)
    assert appended == 0 and "nobody" in errors[0].message
    assert store.db.conn.in_transaction  # the refusal undid its own savepoint only
    store.commit()
    store.close()
    assert [e["id"] for e in payloads(db)] == ["c-acme", "c-globex"]


def test_a_request_presumed_new_to_the_log_answers_as_one_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's ids are not looked up in the log first: an insert that fails on one (the id index) or an
    import with errors is done again with the look-ups, so each answer and the log are as they would be."""
    from forewarn.log import bulk

    acme, globex = customer("acme"), customer("globex")
    cases = [
        [globex, incident("g", ["globex"])],  # all new: appended without looking anything up
        [acme, globex],  # acme is in the log, the same: a duplicate
        [{**acme, "name": "Other"}, globex],  # the same id, other content
        [{**acme, "name": "Other"}, incident("x", ["nobody"])],  # and a dangling reference
        [incident("y", ["nobody"]), customer("fresh")],
    ]
    looked_up: list[int] = []
    real = bulk.EventStore.stored_payloads

    def counted(store: Any, ids: Any, upto: int) -> dict[str, str]:
        looked_up.append(len(ids))
        return real(store, ids, upto)

    monkeypatch.setattr(bulk.EventStore, "stored_payloads", counted)
    for n, events in enumerate(cases):
        answers = []
        for presume in (True, False):
            db = make_db(tmp_path / f"log-{n}-{presume}.db", [acme])
            store = open_store(db)
            store.begin_exclusive()
            validated = validate_lines([orjson.dumps(e) for e in events], "<request>")
            size = validated[1] if presume else bulk.CHUNK_BYTES  # a request's size, or one too large for it
            looked_up.clear()
            result = import_validated(store, (validated[0], size), "<request>", POLICY.ids, nested=True)
            store.commit()
            store.close()
            verdict = verify(db)
            assert verdict.intact
            answers.append((result[:2], [str(e) for e in result[2]], payloads(db), verdict.fingerprint, len(looked_up)))
        assert answers[0][:4] == answers[1][:4], events
        assert answers[0][4] == (0 if n == 0 else 1)  # looked up only where the presumption did not hold

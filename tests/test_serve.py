"""`forewarn serve`: the HTTP API against a real uvicorn server on loopback, with a real HTTP client (httpx)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from serving import READER, TOKENS, WRITER, InProcess, Sink, customer, incident, make_db

from forewarn.cli import main
from forewarn.engine import runner

MAINTENANCE = {
    "id": "m1", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z", "maintenance": "mx-1",
    "title": "Database upgrade", "start": "2026-03-12T08:00:00Z", "end": "2026-03-12T10:00:00Z",
    "customers": "all", "impact": "interruption", "impact_summary": "Logins unavailable",
}
BASE = [customer("acme", at="2026-01-01T00:00:00Z"), MAINTENANCE]
PROBLEM = "application/problem+json"


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    db = make_db(tmp_path_factory.mktemp("serve") / "log.db", BASE)
    running = InProcess(db)
    yield running
    running.stop()


def is_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def count(api: InProcess) -> int:
    """The events posted to the log (not those the engine records meanwhile: it sends missed notices late)."""
    with api.client() as c:
        events = c.get("/v1/events", params={"limit": 10_000}).json()["events"]
    return sum(e["type"] not in ("communication.sent", "ticket.opened") for e in events)


# -- posting events ---------------------------------------------------------------------------------


def test_post_array_then_ndjson_then_again_is_idempotent(api: InProcess) -> None:
    events = [customer("globex"), customer("hooli")]
    with api.client(WRITER) as c:
        first = c.post("/v1/events", json=events)
        assert first.status_code == 200 and first.json()["appended"] == 2 and first.json()["duplicates"] == 0
        ndjson = "".join(json.dumps(e) + "\n" for e in [*events, customer("initrode")])
        second = c.post("/v1/events", content=ndjson, headers={"Content-Type": "application/x-ndjson"})
        assert second.json() == {"appended": 1, "duplicates": 2, "seq": second.json()["seq"]}
        again = c.post("/v1/events", json=events)
        assert again.json()["appended"] == 0 and again.json()["duplicates"] == 2
        assert again.json()["seq"] >= second.json()["seq"] > first.json()["seq"] > 0
    with api.client() as c:
        ids = [e["id"] for e in c.get("/v1/events").json()["events"]]
    assert ids.count("c-globex") == 1 and ids.count("c-initrode") == 1


def test_a_bad_event_is_refused_with_index_field_and_the_import_wording(api: InProcess, tmp_path: Path) -> None:
    bad = dict(MAINTENANCE, id="m-bad", maintenance="mx-bad", end="2026-03-12T07:00:00Z")  # end before start
    good = customer("umbrella")
    before = count(api)
    with api.client(WRITER) as c:
        r = c.post("/v1/events", json=[good, bad])
        body = is_problem(r, 422)
        assert body["errors"] == [{"index": 1, "line": None, "id": "m-bad", "field": "end",
                                   "message": body["errors"][0]["message"]}]
        ndjson = json.dumps(good) + "\n\n" + json.dumps(bad) + "\n"
        r = c.post("/v1/events", content=ndjson, headers={"Content-Type": "application/x-ndjson"})
        lined = is_problem(r, 422)["errors"]
        assert [(e["index"], e["line"], e["field"]) for e in lined] == [(None, 3, "end")]
    assert count(api) == before  # all or nothing: the good event was not appended either
    # the same wording as `forewarn import` of the same lines
    path = tmp_path / "bad.jsonl"
    path.write_text(ndjson, encoding="utf-8")
    db = make_db(tmp_path / "other.db", BASE)
    code, _, err = cli("import", str(path), "--db", str(db))
    assert code == 2 and f"bad.jsonl:3: maintenance.scheduled 'm-bad': field 'end': {lined[0]['message']}" in err


def test_same_id_other_content_and_dangling_reference_are_refused(api: InProcess) -> None:
    with api.client(WRITER) as c:
        clash = dict(customer("acme"), name="Not Acme")
        r = c.post("/v1/events", json=[clash, incident("x1", ["nobody"])])
        errors = is_problem(r, 422)["errors"]
        assert {(e["index"], e["field"]) for e in errors} == {(0, "id"), (1, "customers")}


def test_bodies_that_are_not_event_arrays(api: InProcess) -> None:
    with api.client(WRITER) as c:
        assert "not JSON" in is_problem(c.post("/v1/events", content=b"[{", headers={
            "Content-Type": "application/json"}), 422)["detail"]
        assert "array" in is_problem(c.post("/v1/events", json={"id": "x"}), 422)["detail"]
        r = c.post("/v1/events", json=[1])
        assert is_problem(r, 422)["errors"][0]["message"] == "must be a JSON object, not a number"
        is_problem(c.post("/v1/events", content=b"id=1", headers={"Content-Type": "text/plain"}), 415)


def test_an_array_item_that_repeats_a_key_is_refused_as_import_refuses_the_line(api: InProcess) -> None:
    good = json.dumps(customer("umbrella"))
    repeated = json.dumps(customer("wonka"))[:-1] + ', "name": "Not Wonka"}'  # `name` given twice
    before = count(api)
    with api.client(WRITER) as c:
        for body in (f"[{good},{repeated}]", f"[\n  {good},\n  {repeated}\n]"):  # compact and pretty
            r = c.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
            errors = is_problem(r, 422)["errors"]
            assert [(e["index"], e["id"], e["field"]) for e in errors] == [(1, "c-wonka", "name")]
            assert errors[0]["message"].startswith("duplicate key")
        ok = c.post("/v1/events", content=f"[{good}]", headers={"Content-Type": "application/json"})
        assert ok.status_code == 200 and ok.json()["appended"] == 1
    assert count(api) == before + 1


# -- authentication -----------------------------------------------------------------------------------


def test_tokens_and_roles(api: InProcess) -> None:
    with httpx.Client(base_url=api.url) as anon:
        r = anon.get("/v1/plan")
        is_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        is_problem(anon.get("/v1/plan", headers={"Authorization": "Bearer nope"}), 401)
        is_problem(anon.get("/v1/plan", headers={"Authorization": f"Basic {READER}"}), 401)
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/readyz").status_code in (200, 503)
        is_problem(anon.post("/v1/events", json=[]), 401)
    with api.client(READER) as reader:
        is_problem(reader.post("/v1/events", json=[customer("r")]), 403)
        assert reader.get("/v1/plan").status_code == 200
    with api.client(WRITER) as writer:
        is_problem(writer.get("/v1/plan"), 403)
        assert writer.post("/v1/events", json=[]).json()["appended"] == 0


# -- refusals of routes and parameters ------------------------------------------------------------------


def test_unknown_routes_methods_and_parameters_are_problems(api: InProcess) -> None:
    with api.client() as c:
        assert "/v2/nothing" in is_problem(c.get("/v2/nothing"), 404)["detail"]
        is_problem(c.delete("/v1/events"), 405)
        body = is_problem(c.get("/v1/events", params={"limit": "lots"}), 422)
        assert body["errors"][0]["field"] == "limit"
        is_problem(c.get("/v1/events", params={"limit": 0}), 422)
        assert is_problem(c.get("/v1/plan", params={"as_of": "yesterday-ish"}), 422)["errors"][0]["field"] == "as_of"
        is_problem(c.get("/v1/audit", params={"format": "pdf"}), 422)
        is_problem(c.get("/v1/audit", params={"since": "2026-05-01", "until": "2026-04-01"}), 422)
        is_problem(c.post("/v1/plan/propose", json={"start": "x"}), 422)


def test_an_internal_error_is_a_problem_without_a_traceback(api: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(after: int, limit: int) -> bytes:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.service, "events_after", broken)
    with api.client() as c:
        r = c.get("/v1/events")
    body = is_problem(r, 500)
    assert "secret" not in r.text and "Traceback" not in r.text and "service log" in body["detail"]


# -- reading ----------------------------------------------------------------------------------------------


def test_events_after_and_limit(api: InProcess) -> None:
    with api.client() as c:
        everything = c.get("/v1/events", params={"limit": 10_000}).json()
        page = c.get("/v1/events", params={"after": 1, "limit": 1}).json()
        empty = c.get("/v1/events", params={"after": everything["seq"]}).json()
    assert everything["events"][:2] == [BASE[0], BASE[1]]
    assert page == {"events": [everything["events"][1]], "seq": 2}
    assert empty == {"events": [], "seq": everything["seq"]}


def settled(api: InProcess) -> None:
    """Wait until the engine has made its first pass and recorded what it sent (the log stops growing)."""
    deadline = time.monotonic() + 60
    with api.client() as c:
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        seq = -1
        while time.monotonic() < deadline:
            now = c.get("/v1/events", params={"limit": 10_000}).json()["seq"]
            if now == seq:
                return
            seq = now
            time.sleep(0.5)
    raise AssertionError("the engine did not settle")


def test_plan_propose_and_audit_answer_as_the_cli_does(api: InProcess) -> None:
    db = api.service.settings.db
    settled(api)  # the reports name the log's last event: the engine's sends must be in it before both read it
    with api.client() as c:
        plan = c.get("/v1/plan", params={"as_of": "2026-03-05T00:00:00Z"})
        proposed = c.post("/v1/plan/propose", params={"as_of": "2026-03-05T00:00:00Z"},
                          json={"start": "2026-04-01T08:00:00Z", "end": "2026-04-01T09:00:00Z",
                                "customers": ["acme"], "impact": "degraded"})
        report = c.get("/v1/audit", params={"as_of": "2026-03-20T00:00:00Z"})
        sarif = c.get("/v1/audit", params={"as_of": "2026-03-20T00:00:00Z", "format": "sarif"})
        csv = c.get("/v1/audit", params={"as_of": "2026-03-20T00:00:00Z", "format": "csv"})
    assert plan.status_code == 200 and plan.headers["content-type"] == "application/json"
    _, out, _ = cli("plan", "--db", db, "--as-of", "2026-03-05T00:00:00Z", "--format", "json")
    assert plan.json() == json.loads(out) and plan.json()["due"]  # the advance notice is due
    _, out, _ = cli("plan", "--db", db, "--as-of", "2026-03-05T00:00:00Z", "--format", "json", "--propose",
                    "start=2026-04-01T08:00:00Z,end=2026-04-01T09:00:00Z,customers=acme,impact=degraded")
    assert proposed.status_code == 200 and proposed.json() == json.loads(out)
    # a command of its own, as a user runs it: in this process, the audit's SQLite (ADBC's, read through
    # Arrow) would take the service's open log for its own and remove its -wal file when done
    done = subprocess.run([sys.executable, "-m", "forewarn.cli", "audit", "--db", str(db), "--as-of",
                           "2026-03-20T00:00:00Z", "--format", "json"], capture_output=True, text=True)
    code, out = done.returncode, done.stdout
    assert code == 1 and report.headers["forewarn-exit"] == "1"  # the advance notice was never sent
    assert report.json() == json.loads(out)
    assert sarif.headers["content-type"].startswith("application/sarif+json") and sarif.json()["version"]
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("rule,")
    with api.client() as c:
        early = c.get("/v1/audit", params={"as_of": "2026-02-01T00:00:00Z", "format": "table"})
    assert early.headers["forewarn-exit"] == "0" and early.headers["content-type"].startswith("text/plain")


def test_metrics_and_openapi(api: InProcess) -> None:
    with api.client() as c:
        before = c.get("/metrics")
        with api.client(WRITER) as w:
            w.post("/v1/events", json=[customer("metrics-co", plan="basic")])
        after = c.get("/metrics").text
        doc = c.get("/openapi.json").json()
    assert before.headers["content-type"].startswith("text/plain")

    def value(text: str, name: str) -> float:
        return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))

    for name in ("forewarn_events_appended_total", "forewarn_messages_sent_total", "forewarn_messages_failed_total",
                 "forewarn_obligations_due", "forewarn_alerts", "forewarn_evaluation_seconds_count"):
        value(after, name)
    assert value(after, "forewarn_events_appended_total") == value(before.text, "forewarn_events_appended_total") + 1
    paths = doc["paths"]
    assert {"/v1/events", "/v1/plan", "/v1/plan/propose", "/v1/audit", "/healthz", "/readyz", "/metrics",
            "/openapi.json"} <= set(paths)
    assert set(paths["/v1/events"]) == {"get", "post"}


# -- limits and readiness (a service of their own) ---------------------------------------------------------


def test_oversize_bodies_are_refused_while_reading_and_readyz_waits_for_the_engine(tmp_path: Path) -> None:
    running = InProcess(make_db(tmp_path / "log.db", BASE), max_body=2000, engine=False)
    try:
        events = [customer(f"big-{i}", plan="basic") for i in range(30)]  # ~ 6 KB
        with running.client(WRITER) as c:
            assert "limit of 2000" in is_problem(c.post("/v1/events", json=events), 413)["detail"]

            def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
                body = json.dumps(events).encode()
                for i in range(0, len(body), 500):
                    yield body[i : i + 500]

            is_problem(c.post("/v1/events", content=chunks()), 413)
            assert c.post("/v1/events", json=events[:2]).json()["appended"] == 2
        with httpx.Client(base_url=running.url) as anon:
            assert "not completed a pass" in is_problem(anon.get("/readyz"), 503)["detail"]
        running.service.start_engine()
        deadline = time.monotonic() + 30
        while httpx.get(running.url + "/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(running.url + "/readyz").json() == {"status": "ready"}
    finally:
        running.stop()


# -- acting at once -------------------------------------------------------------------------------------------


def test_a_critical_incident_posted_is_mailed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The POST wakes the engine itself: with the log watch and the poll both out of the way (300 s),
    the mail still goes out at once."""
    monkeypatch.setattr(runner, "WATCH", 300.0)
    sink = Sink()
    running = InProcess(make_db(tmp_path / "log.db", BASE), smtp_port=sink.port, poll=300.0)
    try:
        deadline = time.monotonic() + 30
        while running.service.last_pass is None and time.monotonic() < deadline:
            time.sleep(0.02)
        before = len(sink.messages)  # the first pass sent the maintenance's missed notices late
        with running.client(WRITER) as c:
            r = c.post("/v1/events", json=[incident("db-down", ["acme"], at=datetime.now(UTC))])
            assert r.json()["appended"] == 1
        posted = time.monotonic()
        while len(sink.messages) == before and time.monotonic() - posted < 20:
            time.sleep(0.01)
        assert len(sink.messages) > before, "no mail"
        assert sink.messages[before][1] == ["ops@acme.example"]
        assert b"Critical incident" in sink.messages[before][2]
    finally:
        running.stop()
        sink.stop()


# -- starting ------------------------------------------------------------------------------------------------


def test_serve_refuses_to_start_without_tokens_or_off_loopback(tmp_path: Path) -> None:
    db = str(make_db(tmp_path / "log.db", BASE))
    code, _, err = cli("serve", "--db", db, env={"FOREWARN_API_TOKENS": ""})
    assert code == 2 and "no API tokens" in err
    code, _, err = cli("serve", "--db", db, "--insecure-no-auth", "--listen", "0.0.0.0:8080")
    assert code == 2 and "loopback" in err
    code, _, err = cli("serve", "--db", db, env={"FOREWARN_API_TOKENS": "admin:hunter2"})
    assert code == 2 and "role 'admin'" in err and "hunter2" not in err
    code, _, err = cli("serve", "--db", str(tmp_path / "none.db"), env={"FOREWARN_API_TOKENS": TOKENS})
    assert code == 2 and "no event log" in err


def test_insecure_no_auth_on_loopback_needs_no_token(tmp_path: Path) -> None:
    running = InProcess(make_db(tmp_path / "log.db", BASE), insecure=True, engine=False)
    try:
        with httpx.Client(base_url=running.url) as anon:
            assert anon.get("/v1/events").json()["seq"] == 2
            assert anon.post("/v1/events", json=[customer("open-co")]).json()["appended"] == 1
    finally:
        running.stop()


def broken_delivery() -> None:
    """A delivery that cannot be made (at module level: the engine's process imports it by name)."""
    raise RuntimeError("no way to deliver")


def test_an_engine_that_fails_stops_the_service_with_status_3(tmp_path: Path) -> None:
    import threading

    from serving import POLICY, free_port

    from forewarn.serve import serve
    from forewarn.service import Service, Settings, Tokens, no_webhook

    service = Service(Settings(
        db=str(make_db(tmp_path / "log.db", BASE)), rules_dir=None, policy=POLICY, plan_key=None,
        tokens=Tokens([("reader", READER)]), insecure=False, max_body=1000, poll=300.0,
        make_delivery=broken_delivery, make_webhook=no_webhook,
    ))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(serve(service, "127.0.0.1", free_port())))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and codes == [3]
    assert service.engine_error == "RuntimeError: no way to deliver"
    assert "the engine stopped: RuntimeError" in (service.readiness() or "")


def test_the_plan_right_after_a_post_includes_what_was_posted(api: InProcess) -> None:
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    scheduled = dict(MAINTENANCE, id="m-fresh", maintenance="mx-fresh", at=now.strftime(stamp),
                     start=(now + timedelta(days=40)).strftime(stamp), end=(now + timedelta(days=41)).strftime(stamp))
    with api.client(WRITER) as w:
        assert w.post("/v1/events", json=[scheduled]).json()["appended"] == 1
    with api.client() as c:
        plan = c.get("/v1/plan").json()
    subjects = {(o["rule"], o["subject"]) for o in plan["due"] + plan["upcoming"]}
    assert ("start-reminder", "mx-fresh") in subjects

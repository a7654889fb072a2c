"""What the engine's messages say over a maintenance's life: a reschedule says what changed and replies to the
first notice, the promised update says it is one, the start reminder's wording fits when it goes out, zones
are unambiguous."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from forewarn.audit.findings import audit
from forewarn.engine.replay import MemoryDelivery, replay
from forewarn.engine.runner import Engine
from forewarn.log.source import import_files, read_store
from forewarn.log.store import EventStore
from forewarn.policy.loader import load_policy

POLICY = load_policy()
CUSTOMER = {"id": "c1", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": "tata",
            "name": "Tata", "plan": "enterprise", "timezone": "Asia/Kolkata", "contacts": ["ops@tata.example"]}
SCHEDULED = {"id": "m1", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z", "maintenance": "mx-1",
             "title": "Database upgrade", "start": "2026-03-20T08:00:00Z", "end": "2026-03-20T10:00:00Z",
             "customers": ["tata"], "impact": "interruption", "impact_summary": "Logins unavailable"}
RESCHEDULED = {"id": "m2", "type": "maintenance.rescheduled", "at": "2026-03-04T10:00:00Z", "maintenance": "mx-1",
               "start": "2026-03-21T08:00:00Z", "end": "2026-03-21T10:00:00Z"}
STARTED = {"id": "m3", "type": "maintenance.started", "at": "2026-03-21T08:00:00Z", "maintenance": "mx-1"}
EXTENDED = {"id": "m4", "type": "maintenance.extended", "at": "2026-03-21T09:50:00Z", "maintenance": "mx-1",
            "reason": "Index rebuild is slower than planned", "next_update_by": "2026-03-21T11:00:00Z"}
COMPLETED = {"id": "m5", "type": "maintenance.completed", "at": "2026-03-21T11:30:00Z", "maintenance": "mx-1",
             "healthy": True}


def run_life(tmp_path: Path) -> tuple[list[EmailMessage], EventStore]:
    src = tmp_path / "life.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in
                           [CUSTOMER, SCHEDULED, RESCHEDULED, STARTED, EXTENDED, COMPLETED]))
    store = EventStore(tmp_path / "log.db")
    import_files(store, [src], POLICY.ids)
    delivery = MemoryDelivery()
    engine = Engine(store, POLICY, delivery, retry_delay=0)
    replay(engine, datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 3, 22, tzinfo=UTC))
    return delivery.messages, store


def plain(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_a_maintenance_life_in_messages(tmp_path: Path) -> None:
    messages, store = run_life(tmp_path)
    kinds = [str(m["X-Forewarn-Kind"]) for m in messages]
    first, reschedule = messages[0], messages[1]
    assert kinds[:2] == ["advance_notice", "advance_notice"]

    # zones: the abbreviation with its offset (IST is also Israel's and Ireland's)
    assert "Fri 20 Mar 2026 13:30 IST (UTC+05:30)" in plain(first)
    assert "We will carry out scheduled maintenance" in plain(first)
    assert first["In-Reply-To"] is None

    # the reschedule says what changed and replies to the first notice
    assert str(reschedule["Subject"]).startswith("[Maintenance rescheduled] Database upgrade: Sat 21 Mar")
    text = plain(reschedule)
    assert "has been rescheduled" in text
    assert "It moves from Fri 20 Mar 13:30-15:30 IST (UTC+05:30)" in text
    assert "to Sat 21 Mar 13:30-15:30 IST (UTC+05:30)" in text
    assert reschedule["In-Reply-To"] == first["Message-ID"] == reschedule["References"]

    # the start reminder, sent ahead of the start, says when it starts
    reminder = messages[kinds.index("start_reminder")]
    sent_at = datetime.strptime(str(reminder["Date"]), "%a, %d %b %Y %H:%M:%S %z")
    ahead = round((datetime(2026, 3, 21, 8, tzinfo=UTC) - sent_at).total_seconds() / 60)
    assert ahead > 0
    assert f"starts at 13:30 IST (UTC+05:30), in {ahead} minutes." in plain(reminder)
    assert "starting now" not in plain(reminder)
    assert reminder["In-Reply-To"] == first["Message-ID"]

    # the extension notice, then the promised update: an update, not a copy of the notice
    extensions = [m for m in messages if str(m["X-Forewarn-Kind"]) == "extension"]
    assert len(extensions) == 2
    notice, update = extensions
    assert str(notice["Subject"]).startswith("[Maintenance extended]")
    assert "needs more time than planned" in plain(notice)
    assert str(update["Subject"]).startswith("[Maintenance update]")
    assert "This is the update we promised" in plain(update)
    assert "needs more time than planned" not in plain(update)
    assert "Nothing has changed since our message of Sat 21 Mar 2026 15:20 IST (UTC+05:30)" in plain(update)

    # and the policy is kept
    assert not audit(read_store(store), POLICY, datetime(2026, 3, 22, tzinfo=UTC), None, None).violations
    store.close()


def test_a_promised_update_after_a_new_end_says_what_is_new(tmp_path: Path) -> None:
    from forewarn.engine.draft import Draft
    from forewarn.engine.render import render

    draft = Draft(
        communication="fw-2", message_id="<fw-2@example.com>", kind="extension", subject_kind="maintenance",
        subject="mx-1", subject_title="Database upgrade", customer="tata", customer_name="Tata",
        timezone="Asia/Kolkata", sender="support@example.com", to=("ops@tata.example",),
        support_contact="support@example.com",
        states={"reason": "slow", "end": datetime(2026, 3, 21, 12, tzinfo=UTC)},
        context={"update_since": datetime(2026, 3, 21, 9, 50, tzinfo=UTC),
                 "update_previous_end": datetime(2026, 3, 21, 11, tzinfo=UTC), "thread": "not a message id"},
    )
    msg = render(draft, datetime(2026, 3, 21, 10, 50, tzinfo=UTC))
    assert ("The target end is now Sat 21 Mar 2026 17:30 IST (UTC+05:30)"
            " (it was Sat 21 Mar 2026 16:30 IST (UTC+05:30)).") in plain(msg)
    assert msg["In-Reply-To"] is None  # an invalid recorded Message-ID: no thread, still a message

"""Alerts: what no e-mail can fix, for a person to act on (and delivery failures that need one)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

__all__ = ["RETRY_COMMAND", "Alert", "delivery_alerts", "ticket_alerts"]


class Alert(NamedTuple):
    """Something no e-mail can fix: a person must act."""

    rule: str
    subject: str
    problem: str
    message: str
    customer: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "rule": self.rule,
            "subject": self.subject,
            "problem": self.problem,
            "message": self.message,
        }
        if self.customer is not None:
            out["customer"] = self.customer
        return out



RETRY_COMMAND = "forewarn run --once --retry-failed"


def delivery_alerts(
    failing: list[tuple[str, str, str | None, str | None, int, str]],
    now: datetime,
    within: timedelta = timedelta(hours=24),
) -> list[Alert]:
    """Deliveries that keep failing: (outbox key, state, deadline, last error, attempts, communication)
    per entry (engine.outbox.failing).

    A permanent refusal always needs a person; a transient failure does once
    its obligation's deadline is less than `within` away (or passed).
    """
    out = []
    for key, state, not_after, error, attempts, communication in failing:
        deadline = datetime.fromisoformat(not_after.replace("Z", "+00:00")) if not_after else None
        urgent = state == "failed" or deadline is None or deadline - now <= within
        if urgent:
            when = f"due {not_after}" if not_after else "no deadline known"
            out.append(
                Alert(
                    "delivery",
                    key,
                    "refused" if state == "failed" else "failing",
                    f"delivery of {key} ({when}) failed {attempts} time(s): {error}; "
                    + (
                        f"fix the address or the message, then resend with `{RETRY_COMMAND} {communication}`"
                        if state == "failed"
                        else "check the mail server: the engine keeps retrying"
                    ),
                )
            )
    return out


def ticket_alerts(failing: list[tuple[str, int, str | None, float]]) -> list[Alert]:
    """Tickets the external ticket system has not accepted yet: (communication, attempts, last error,
    next try) per owed ticket (engine.tickets.failing). Retried by the engine; a person should look."""
    return [
        Alert(
            "ticket-opened",
            communication,
            "ticket-failing",
            f"the ticket for {communication} is not opened: the ticket system refused or missed it "
            f"{attempts} time(s) ({error}); the engine retries it with backoff: check --ticket-webhook",
        )
        for communication, attempts, error, _next_try in failing
    ]

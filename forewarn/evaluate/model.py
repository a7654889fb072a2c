"""The value types of forewarn.lifecycle.model, under the name tests/oracle.py imports them by."""

from forewarn.lifecycle.model import Moment, Obligation, Outcome, Sent, Status, Violation

__all__ = ["Moment", "Obligation", "Outcome", "Sent", "Status", "Violation"]

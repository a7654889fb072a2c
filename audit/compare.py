"""`forewarn audit --compare-rules OLD_DIR`: the findings a policy change adds and removes, on the same log.

Both policies judge the same events as of the same instant for the same period; a finding is
the same in both when its identity is (rule, problem, subject, customer, communication, due,
status). A changed parameter that moves a deadline therefore shows as one finding removed and
one added: the finding did change. Messages are not compared (they quote the parameters).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from forewarn.audit.findings import AuditResult, Finding, utc

Key = tuple[str, str, str, str, str, str, str]


@dataclass(frozen=True)
class Comparison:
    """The findings of the policy in force that the old policy did not have (added), and the reverse."""

    old_source: str
    old_digest: str
    new_digest: str
    added: tuple[Finding, ...]
    removed: tuple[Finding, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "old_policy": {"rules": self.old_source, "digest": self.old_digest},
            "new_policy": {"digest": self.new_digest},
            "added": [f.to_json() for f in self.added],
            "removed": [f.to_json() for f in self.removed],
        }

    def summary(self) -> str:
        same = " (the same policy)" if self.old_digest == self.new_digest else ""
        return (
            f"Against the policy in {self.old_source}{same}: "
            f"{len(self.added)} finding(s) added, {len(self.removed)} removed."
        )

    def rows(self) -> list[tuple[str, Finding]]:
        """("added" | "removed", finding), in report order."""
        rows = [("added", f) for f in self.added] + [("removed", f) for f in self.removed]
        return sorted(rows, key=lambda r: (r[1].sort_key(), r[0]))


def finding_key(f: Finding) -> Key:
    return (f.rule, f.problem, f.subject, f.customer, f.communication or "", utc(f.due) or "", f.status)


def compare(new: AuditResult, old: AuditResult, old_source: str) -> Comparison:
    """What `new` finds that `old` does not (added) and the reverse (removed), as multisets."""
    new_keys = Counter(finding_key(f) for f in new.findings)
    old_keys = Counter(finding_key(f) for f in old.findings)
    added_left, removed_left = new_keys - old_keys, old_keys - new_keys
    added = []
    for f in new.findings:
        k = finding_key(f)
        if added_left[k] > 0:
            added_left[k] -= 1
            added.append(f)
    removed = []
    for f in old.findings:
        k = finding_key(f)
        if removed_left[k] > 0:
            removed_left[k] -= 1
            removed.append(f)
    return Comparison(old_source, old.policy.digest, new.policy.digest, tuple(added), tuple(removed))


def table_rows(c: Comparison) -> list[list[str]]:
    """The comparison as rows: change, rule, problem, subject, customer, due, message."""
    return [[change, f.rule, f.problem, f.subject, f.customer, utc(f.due) or "", f.message] for change, f in c.rows()]


COLUMNS = ["change", "rule", "problem", "subject", "customer", "due", "message"]

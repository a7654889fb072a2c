"""The per-object evaluation's matching (tests/oracle.py): each communication fulfils at most one obligation per
rule."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from forewarn.evaluate.index import LogIndex
from forewarn.lifecycle.model import Obligation, Outcome, Sent

CommKey = tuple[str, str, str, str]  # subject kind, subject, customer, kind


def communications_by_key(index: LogIndex) -> dict[CommKey, list[Sent]]:
    """Communications grouped by what they are about, to whom, of which kind (in send order)."""
    return _grouped(index.sent)


def _grouped(sent: Iterable[Sent]) -> dict[CommKey, list[Sent]]:
    groups: dict[CommKey, list[Sent]] = defaultdict(list)
    for item in sent:
        subject = item.subject
        if subject is not None:
            groups[(subject[0], subject[1], item.comm.customer, item.comm.kind)].append(item)
    return dict(groups)


def match(
    obligations: Sequence[Obligation],
    void: dict[int, str],
    allowed: dict[str, frozenset[str]],
    comms: dict[CommKey, list[Sent]],
    as_of: datetime,
) -> list[Outcome]:
    """The outcome of every obligation (same order as given).

    `void` maps an obligation's index to why it is void; `allowed` gives each
    rule's problem codes (late / early are only reported where listed).
    Per (rule, subject, customer), obligations are taken in deadline order:
    first every one that can be met on time takes the earliest fitting unused
    communications; then each remaining one past its deadline is late (an
    unused one sent after the interval), early (one sent before it), or missing.

    An obligation that counts communications (`count` > 1: update-cadence's "at least two e-mails
    between the extension and the promised update") counts every fitting one, used or not, and uses
    none up: one e-mail may be the promised update of several extensions (policy.md, settled readings).
    """
    outcomes: list[Outcome | None] = [None] * len(obligations)
    groups: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    for i, ob in enumerate(obligations):
        if i in void:
            outcomes[i] = Outcome(ob, "void", void_reason=void[i])
        else:
            groups[(ob.rule, ob.subject_kind, ob.subject, ob.customer)].append(i)

    for (_rule, kind, subject, customer), members in groups.items():
        if len(members) > 1:
            members.sort(key=lambda i: (obligations[i].not_after, obligations[i].opened, i))
        first = obligations[members[0]]
        if len(first.kinds) == 1:  # one group, already in send order
            candidates = comms.get((kind, subject, customer, first.kinds[0]), [])
        else:
            candidates = sorted(
                (s for k in first.kinds for s in comms.get((kind, subject, customer, k), ())),
                key=lambda s: s.pos,
            )
        if len(members) == 1 and first.count == 1 and _met_by_one(first, members[0], candidates, outcomes):
            continue  # the common case: one obligation, met on time by its first fitting communication
        used: set[int] = set()
        # Pass 1: on time.
        for i in members:
            ob = obligations[i]
            counting = ob.count > 1
            fitting = [
                s
                for s in candidates
                if (counting or s.pos not in used)
                and ob.opened <= s.comm.at
                and ob.not_before <= s.comm.at <= ob.not_after
            ][: ob.count]
            if len(fitting) == ob.count:
                if not counting:
                    used.update(s.pos for s in fitting)
                outcomes[i] = Outcome(
                    ob,
                    "met",
                    sent=fitting[-1].comm.at,
                    matched=tuple(s.comm.communication for s in fitting),
                    matched_events=tuple(s.comm.id for s in fitting),
                )
        # Pass 2: what is left is pending (deadline ahead) or violated.
        for i in members:
            if outcomes[i] is not None:
                continue
            ob = obligations[i]
            if ob.not_after > as_of:
                outcomes[i] = Outcome(ob, "pending")
                continue
            codes = allowed[ob.rule]
            unused = [s for s in candidates if s.pos not in used and s.comm.at >= ob.opened]
            late = next((s for s in unused if s.comm.at > ob.not_after), None) if "late" in codes else None
            early = next((s for s in unused if s.comm.at < ob.not_before), None) if "early" in codes else None
            chosen, problem = (late, "late") if late else (early, "early") if early else (None, "missing")
            if chosen is not None:
                used.add(chosen.pos)
                outcomes[i] = Outcome(
                    ob,
                    "violated",
                    problem=problem,
                    communication=chosen.comm.communication,
                    sent=chosen.comm.at,
                    matched_events=(chosen.comm.id,),
                )
            else:
                outcomes[i] = Outcome(ob, "violated", problem="missing")
    return [o for o in outcomes if o is not None]


def _met_by_one(ob: Obligation, i: int, candidates: Sequence[Sent], outcomes: list[Outcome | None]) -> bool:
    """Pass 1 for a lone obligation needing one communication: met by the first that fits, if any."""
    low = ob.opened if ob.opened > ob.not_before else ob.not_before
    high = ob.not_after
    for s in candidates:
        at = s.comm.at
        if low <= at <= high:
            outcomes[i] = Outcome(ob, "met", None, None, at, (s.comm.communication,), (s.comm.id,))
            return True
    return False


def count_in_window(ob: Obligation, comms: dict[CommKey, list[Sent]]) -> int:
    """How many matching communications went out inside the obligation's interval."""
    return sum(
        1
        for k in ob.kinds
        for s in comms.get((ob.subject_kind, ob.subject, ob.customer, k), ())
        if ob.opened <= s.comm.at and ob.not_before <= s.comm.at <= ob.not_after
    )

"""The engine's positions of events in evaluation order (forewarn.relational.engine.Positions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from forewarn.relational.engine import Positions


@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 4)), min_size=1, max_size=700),
    st.lists(st.integers(1, 2_000), max_size=6),
)
def test_positions_number_every_key_in_order(steps: list[tuple[int, int]], cuts: list[int]) -> None:
    """Keys (at, seq) in evaluation order, several at one instant with sequences out of step with time, added in
    appends of any size (past the arrays' first capacity when long): each key's position is its index, one by
    one and in bulk; pos_at is the last at or before an instant."""
    keys: list[tuple[int, int]] = []
    at = 0
    for gap, repeat in steps:
        at += gap
        keys += [(at * 1_000_000, 5 * len(keys) + 3 * (repeat - i)) for i in range(repeat)]
    keys.sort()
    positions = Positions()
    start = 0
    for cut in sorted({*cuts, len(keys)}):
        part = keys[start:cut]
        positions.extend([a for a, _ in part], [s for _, s in part])
        start = max(start, cut)
    assert len(positions) == len(keys) and positions.last() == keys[-1]
    assert positions.positions([a for a, _ in keys], [s for _, s in keys]).tolist() == list(range(len(keys)))
    assert [positions.pos(a, s) for a, s in keys[::7]] == list(range(0, len(keys), 7))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for a, _s in keys[::11]:
        last = max(i for i, (b, _) in enumerate(keys) if b <= a)
        assert positions.pos_at(epoch + timedelta(microseconds=a)) == last

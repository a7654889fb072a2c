"""forewarn.record: frozen slotted dataclasses with a fast __init__ behave as dataclasses do."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from forewarn.record import record


@record
class Point:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list, compare=False)


def test_positional_keyword_and_default_arguments() -> None:
    assert Point(1, 2) == Point(x=1, y=2)
    assert Point(1).y == 0
    assert Point(1).tags == [] and Point(1).tags is not Point(1).tags  # a fresh default each time
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, 2, [], 4)  # type: ignore[call-arg]


def test_frozen_slotted_hashable_and_picklable() -> None:
    p = Point(1, 2, ["a"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.y  # type: ignore[misc]
    assert not hasattr(p, "__dict__")
    assert hash(p) == hash(Point(1, 2))  # tags: compare=False
    assert pickle.loads(pickle.dumps(p)) == p
    assert dataclasses.replace(p, y=5) == Point(1, 5)
    assert repr(p) == "Point(x=1, y=2, tags=['a'])"


def test_unsupported_shapes_are_refused() -> None:
    with pytest.raises(TypeError, match="__post_init__"):

        @record
        class Checked:
            x: int

            def __post_init__(self) -> None:
                pass

    with pytest.raises(TypeError, match="positional"):

        @record
        class KeywordOnly:
            x: int = dataclasses.field(kw_only=True)

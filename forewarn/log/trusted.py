"""Events from the log's own rows, built without validating them again: each was validated when it was recorded.

A stored payload is the canonical JSON of an event that passed validation (events.parse), so
reading it back needs no checks, only the conversions validation makes: timestamps to UTC
datetimes, lists to tuples, `states` to its model, the `from` alias, defaults for absent
fields. `event_from_payload` makes exactly what `EVENT_ADAPTER.validate_json(payload)` makes
(the same class, field values, field order and set fields: tests/test_trusted.py checks this on
every sample log and on generated events) in less time (781k events: 4.5 s of CPU, not 6.1 s).
Whatever is not shaped like a stored event (unknown type or field, missing field, a list that
is not one) is validated as any input is; field values themselves are not checked again: a row
changed behind forewarn's back (the log is append-only, written by `import` and `run` only) is
not detected here.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel

from forewarn.events.models import EVENT_ADAPTER, EVENT_CLASSES, Event, States, parse_timestamp

__all__ = ["event_from_payload"]

Convert = Callable[[Any], Any] | None
"""From the JSON value to the field's value (None: the value as is)."""
_new = object.__new__
_set = object.__setattr__


_SHARED_MAX = 64
_SHARED_LIMIT = 100_000
_strings: dict[str, str] = {}


def _remember(value: str) -> None:
    if len(_strings) >= _SHARED_LIMIT:
        _strings.clear()
    _strings[value] = value


def _shared_str(value: str) -> str:
    """One object for equal short strings (customer ids, kinds, addresses repeat by the thousand), as
    pydantic's string cache does when validating: a log in memory takes a tenth less. Bounded."""
    found = _strings.get(value)
    if found is None:
        _remember(value)
        return value
    return found


def _strip(annotation: Any) -> Any:
    """The type under Annotated[...] (pydantic keeps it inside Optional[...])."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _tuple(value: Any) -> tuple[Any, ...]:
    if type(value) is not list:
        raise ValueError("not a list")
    return tuple([_shared_str(v) if type(v) is str and len(v) <= _SHARED_MAX else v for v in value])


def _customers(value: Any) -> Any:
    return value if value == "all" else _tuple(value)


def _converter(annotation: Any) -> Convert:
    """How a field of this annotation turns its JSON value into the validated one."""
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [_strip(a) for a in typing.get_args(annotation)]
        if any(typing.get_origin(a) is tuple for a in args):  # Customers: a tuple of ids or "all"
            return _customers
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:  # Optional[X]: X's conversion, None as is
            inner = _converter(rest[0])
            return None if inner is None else (lambda v: None if v is None else inner(v))
        return None
    if annotation is datetime:
        return parse_timestamp
    if origin is tuple:
        return _tuple
    if annotation is States:
        return _model(States)
    return None


def _unsupported(data: Any) -> BaseModel:
    raise ValueError("built by validation")


def _plain(cls: type[BaseModel]) -> bool:
    """Whether validation makes `cls` instances from their fields alone (what `_model` builds): no
    default factories, no post-init hook, no private attributes; nested models alike."""
    if cls.__pydantic_post_init__ is not None or cls.__private_attributes__:
        return False
    return all(info.default_factory is None for info in cls.model_fields.values())


def _model(cls: type[BaseModel]) -> Callable[[Any], BaseModel]:
    """A builder of `cls` instances from a JSON object of trusted data (any other class: validated)."""
    if not _plain(cls):
        return _unsupported
    template: dict[str, Any] = {}  # every field in order, with its default (required ones are always given)
    plan: dict[str, tuple[str, Convert]] = {}  # JSON key -> (field name, conversion)
    required = set()
    for name, info in cls.model_fields.items():
        key = info.alias or name
        template[name] = None if info.is_required() else info.default
        plan[key] = (name, _converter(info.annotation))
        if info.is_required():
            required.add(key)
    shapes: dict[tuple[str, ...], set[str]] = {}  # keys present -> set field names (one shared set per shape)

    def build(data: Any) -> BaseModel:
        if type(data) is not dict:
            raise ValueError("not a JSON object")
        shape = tuple(data)
        names = shapes.get(shape)
        if names is None:
            if not plan.keys() >= data.keys() or not required <= data.keys():
                raise ValueError("not the stored form of a valid event")
            names = shapes[shape] = {plan[key][0] for key in shape}
        values = template.copy()
        strings = _strings
        for key, value in data.items():
            name, convert = plan[key]
            if convert is not None:
                value = convert(value)
            elif type(value) is str and len(value) <= _SHARED_MAX:
                found = strings.get(value)
                if found is None:
                    _remember(value)
                else:
                    value = found
            values[name] = value
        model = _new(cls)
        _set(model, "__dict__", values)
        _set(model, "__pydantic_fields_set__", names)
        _set(model, "__pydantic_extra__", None)
        _set(model, "__pydantic_private__", None)
        return model

    return build


_BUILDERS = {type_name: _model(cls) for type_name, cls in EVENT_CLASSES.items()}


def event_from_payload(payload: bytes | str) -> Event:
    """The event a stored payload holds: built directly when it has the stored form, else validated."""
    try:
        data = orjson.loads(payload)
        return _BUILDERS[data["type"]](data)  # type: ignore[return-value]
    except (ValueError, KeyError, TypeError):  # orjson.JSONDecodeError is a ValueError
        return EVENT_ADAPTER.validate_json(payload)

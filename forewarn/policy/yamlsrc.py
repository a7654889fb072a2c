"""Safe YAML with a line number for every key: no tags, no code, no anchors or aliases, duplicate keys refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]
_SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same safe constructors, faster


@dataclass
class YamlDoc:
    """A parsed YAML document and where each of its keys and items stands."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: list[tuple[Path_, int]] = field(default_factory=list)

    def line_of(self, path: Path_) -> int:
        """The line of the longest prefix of `path` that is known (1 if none)."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return 1


class YamlError(Exception):
    """The text is not YAML this loader accepts."""

    def __init__(self, line: int, message: str, code: str = "yaml-syntax") -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.code = code


def load_yaml(text: str) -> YamlDoc:
    """Parse `text` with the safe loader only, recording key lines and duplicate keys.

    Anchors and aliases are refused first, from the event stream (linear in the text): an alias
    shares a node, and nested aliases ("billion laughs") make anything that walks the nodes, or the
    data built from them, exponential. Rule files have no use for them.
    """
    try:
        _refuse_aliases(text)
        node = yaml.compose(text, Loader=_SAFE)
    except yaml.YAMLError as exc:
        raise _located(exc, text) from None
    doc = YamlDoc(data=None)
    if node is None:
        return doc
    _walk(node, (), doc)
    try:
        doc.data = yaml.load(text, Loader=_SAFE)  # the safe loader: plain data only, no tags
    except yaml.YAMLError as exc:  # e.g. an explicit tag the safe loader refuses
        raise _located(exc, text) from None
    return doc


def _refuse_aliases(text: str) -> None:
    """A YamlError at the first anchor (&name) or alias (*name) of `text`."""
    for event in yaml.parse(text, Loader=_SAFE):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            what = "alias" if isinstance(event, yaml.AliasEvent) else "anchor"
            sign = "*" if what == "alias" else "&"
            raise YamlError(
                event.start_mark.line + 1,
                f"{what} {sign}{event.anchor} not allowed: rule files use no anchors, aliases or merge keys "
                f"(write the value out)",
                "yaml-alias",
            )


def _located(exc: yaml.YAMLError, text: str) -> YamlError:
    """A YamlError at the line the problem is on, its message on one line.

    Marked errors (scanner, parser, composer, constructor) carry a line; a reader error
    (a control character, say) carries a character position; str(exc) would add a second
    line ('  in "<unicode string>", ...') that `rules lint` must not print.
    """
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        reason = exc.problem or exc.context or "unreadable"
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        reason = f"unacceptable character #x{exc.character:04X}: {exc.reason}" if isinstance(
            exc.character, int
        ) else str(exc.reason)
    else:
        line, reason = 1, str(exc)
    return YamlError(line, "not valid YAML: " + " ".join(str(reason).split()))


def _walk(node: yaml.Node, path: Path_, doc: YamlDoc) -> None:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                doc.duplicates.append(((*path, key), key_node.start_mark.line + 1))
            seen.add(key)
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), doc)

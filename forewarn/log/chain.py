"""The log's hash chain: every event's hash commits to its payload, its sequence and every event before it.

    hash(seq) = SHA-256( hash(seq - 1) || seq as 8 bytes, big-endian, unsigned || payload as UTF-8 )
    hash(0)   = 32 zero bytes (the empty log)

`payload` is the event's canonical JSON exactly as stored in the `payload` column; `hash` is stored as
32 raw bytes in the `hash` column. The hash depends on nothing else (not on how the event was appended:
`import`, the bulk import, the engine), so two logs holding the same events in the same recording order
have the same hashes. The log's fingerprint is its high-water sequence and the hash of that event (the
chain head): it names the exact log a report judged, and any change to a recorded event, its position or
a deletion before the head changes it. A writer who recomputes the hashes after an edit, or deletes the
newest events, leaves a valid chain with another head: compare the fingerprint a report states with the
log's (`forewarn verify --expect SEQ:HEAD`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["GENESIS", "Chain", "Fingerprint", "link"]

GENESIS = bytes(32)
"""The chain head of the empty log."""

_SEQ = struct.Struct(">Q").pack
_sha256 = hashlib.sha256


def link(prev: bytes, seq: int, payload: str | bytes) -> bytes:
    """The hash of the event recorded as `seq` with `payload`, after the event whose hash is `prev`."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _sha256(prev + _SEQ(seq) + data).digest()


@dataclass(frozen=True)
class Fingerprint:
    """A log's high-water recording sequence and the hash of that event (the chain head)."""

    seq: int
    head: bytes

    @property
    def head_text(self) -> str:
        return "sha256:" + self.head.hex()

    def __str__(self) -> str:
        return f"seq {self.seq}, head {self.head_text}"

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "head": self.head_text}

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        """`SEQ:sha256:HEX` (as `forewarn verify` prints it); ValueError if malformed."""
        seq, sep, head = text.partition(":")
        digest = head.removeprefix("sha256:")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise ValueError(f"expected SEQ:sha256:HEX (64 hex digits), got {text!r}")
        return cls(int(seq), bytes.fromhex(digest))


class Chain:
    """The chain's tip while appending: the last sequence and its hash."""

    __slots__ = ("head", "seq")

    def __init__(self, seq: int = 0, head: bytes = GENESIS) -> None:
        self.seq = seq
        self.head = head

    def fingerprint(self) -> Fingerprint:
        return Fingerprint(self.seq, self.head)

    def rows(self, rows: Iterable[tuple[Any, ...]], payload_at: int) -> list[tuple[Any, ...]]:
        """`rows` (the columns of events to append, in order), each extended with its (seq, hash); the tip advances.

        `payload_at` is the index of the payload among a row's columns. The hash comes as a bytearray, the
        same bytes: Python's sqlite3 binds it as the same BLOB, without first looking for an adapter as it does
        for bytes.
        """
        seq, head = self.seq, self.head
        sha, pack = _sha256, _SEQ
        out = []
        for row in rows:
            seq += 1
            head = sha(head + pack(seq) + row[payload_at].encode()).digest()  # = link(): inline, per event
            out.append((*row, seq, bytearray(head)))
        self.seq, self.head = seq, head
        return out

    def extend(self, payloads: Iterable[str | bytes]) -> Chain:
        """Advance over the payloads of events appended in this order."""
        for payload in payloads:
            self.seq += 1
            self.head = link(self.head, self.seq, payload)
        return self

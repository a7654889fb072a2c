"""Input files named on the command line, each opened and read once.

`-` is standard input. A pipe, a FIFO, /dev/stdin or a process substitution (/dev/fd/N) can be
read only once: whatever looks at its first bytes (the SQLite sniff) must hand them on to the
parser rather than reopen the name. Regular files are sniffed and rewound; they may be reopened
(byte ranges for parallel validation), and `Fingerprint` tells whether one changed meanwhile.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "STDIN",
    "Fingerprint",
    "NotJsonl",
    "check_names",
    "is_stdin",
    "open_input",
    "regular_size",
]

STDIN = "-"
SQLITE_HEADER = b"SQLite format 3"


class NotJsonl(Exception):
    """The input is a SQLite database (a log given where JSONL was expected)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a SQLite database, not JSONL: use --db {name}")


def is_stdin(name: str | Path) -> bool:
    return str(name) == STDIN


def check_names(names: Sequence[str | Path]) -> str | None:
    """Why these inputs cannot be read together (standard input named twice), or None."""
    if sum(1 for n in names if is_stdin(n)) > 1:
        return "`-` (standard input) can be read only once: name it once"
    return None


def regular_size(name: str | Path) -> int:
    """The size of a regular file; 0 for standard input, pipes and anything that cannot be stat'ed."""
    if is_stdin(name):
        return 0
    try:
        st = os.stat(name)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _stdin() -> BinaryIO:
    return sys.stdin.buffer


class _Replay(io.RawIOBase):
    """The bytes already taken from a stream, then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        read1 = getattr(self._rest, "read1", None)
        data = read1(len(buffer)) if read1 is not None else self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def open_input(name: str | Path) -> Iterator[BinaryIO]:
    """`name` (or standard input for `-`) opened once for reading, at its start; NotJsonl if it is a
    SQLite database. Standard input is not closed afterwards. OSError if it cannot be opened."""
    if is_stdin(name):
        handle, close = _stdin(), False
    else:
        handle, close = open(name, "rb"), True  # noqa: SIM115 (closed below)
    try:
        head = handle.read(len(SQLITE_HEADER))  # a buffered read: up to that many bytes, or the end
        if head.startswith(SQLITE_HEADER):
            raise NotJsonl(str(name))
        if close and handle.seekable():
            handle.seek(0)
            yield handle
        else:
            yield io.BufferedReader(_Replay(head, handle), 1 << 16)  # type: ignore[arg-type]
    finally:
        if close:
            handle.close()


@dataclass(frozen=True)
class Fingerprint:
    """What says a regular file is the one that was read: device, inode, size, modification and change times."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Fingerprint:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def same_as(self, name: str | Path) -> bool:
        """Whether `name` is still this file, unchanged."""
        try:
            return Fingerprint.of(os.stat(name)) == self
        except OSError:
            return False

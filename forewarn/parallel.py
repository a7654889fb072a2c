"""Work for the other CPU: a forked child computes a function of the parent's memory and sends back its result.

Evaluation is in-memory work over hundreds of thousands of objects that cannot cross a process
boundary cheaply; a forked child needs none to cross: it sees the parent's objects as they are
(copy-on-write) and only its result, which must be small (a few violations), is pickled back.
The parent goes on with other work meanwhile and `join`s the result when it needs it. Should the
child fail in any way, the parent computes the result itself: the outcome is the same either way,
only slower. Without fork (or with $FOREWARN_WORKERS=1) the function simply runs at the join.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["available", "forked"]

T = TypeVar("T")


def available() -> bool:
    """Whether a child can take work now: fork exists, more than one CPU, not turned off."""
    if not hasattr(os, "fork") or os.environ.get("FOREWARN_WORKERS") == "1":
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return cpus > 1


def forked(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    """Start `fn(*args)` in a forked child (if `available()`); the returned join gives its result."""
    if not available():
        return lambda: fn(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, leave without running the parent's cleanup
        status = 1
        try:
            os.close(read_end)
            data = pickle.dumps(fn(*args), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)

    def join() -> T:
        with os.fdopen(read_end, "rb") as inp:
            data = inp.read()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            return fn(*args)  # the child failed (an error, killed, out of memory): the same work, here
        result: T = pickle.loads(data)
        return result

    return join

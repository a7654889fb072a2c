"""Work for the other CPUs: a forked child computes a function of the parent's memory and sends back its result
(`forked`: an `audit --events`' log checks), or forked workers map a function over items (`mapped`: the
validation of large imports and JSONL logs).

The log checks read hundreds of thousands of parsed events that cannot cross a process boundary
cheaply; a forked child needs none to cross: it sees the parent's objects as they are
(copy-on-write) and only its result (the checks' verdict) is pickled back.
The parent goes on with other work meanwhile and `join`s the result when it needs it. Should the
child fail in any way, the parent computes the result itself: the outcome is the same either way,
only slower. Without fork (or with $FOREWARN_WORKERS=1) the function simply runs at the join.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

__all__ = ["available", "cpus", "forked", "idle_cpus", "mapped"]

T = TypeVar("T")
A = TypeVar("A")


def available() -> bool:
    """Whether a child can take work now: fork exists, more than one CPU, not turned off."""
    if not hasattr(os, "fork") or os.environ.get("FOREWARN_WORKERS") == "1":
        return False
    return cpus() > 1


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def idle_cpus(sample: float = 0.1) -> float:
    """How many CPUs were idle over a short sample (/proc/stat); all of them where that cannot be read.

    Worker processes pay (their results cross a process boundary) only on CPUs that would otherwise be
    idle: on CPUs busy with other jobs they make the work slower, not faster.
    """
    count = cpus()

    def times() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        return sum(values[:8]), values[3] + values[4]  # all but guest time; idle + iowait

    try:
        total0, idle0 = times()
        time.sleep(sample)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return float(count)
    if total1 <= total0:
        return float(count)
    return count * (idle1 - idle0) / (total1 - total0)


@contextlib.contextmanager
def mapped(fn: Callable[[A], T], items: Sequence[A], workers: int | None = None) -> Iterator[Iterator[T]]:
    """`fn` of every item, in the items' order, computed by `workers` forked processes (default: one per
    CPU) a few items ahead of the consumer; in this process, lazily, when no child can take work (see
    `available`) or `workers` is 0. The children are stopped when the context ends, consumed or not.

    The order of the results is the items', whichever child finishes first: the outcome never depends on
    scheduling. `fn` must be a module-level function (it is named, not pickled, in the children).
    """
    count = cpus() if workers is None else workers
    if count < 1 or not items or not available():
        yield (fn(item) for item in items)
        return
    with multiprocessing.get_context("fork").Pool(min(count, len(items)), initializer=_quiet_gc) as pool:
        yield _ahead(pool, fn, items, 2 * count)


def _ahead(pool: Any, fn: Callable[[A], T], items: Sequence[A], window: int) -> Iterator[T]:
    """The results in order, at most `window` items submitted ahead of the one consumed (bounded memory: a
    consumer slower than the children does not make them pile up results)."""
    pending: collections.deque[Any] = collections.deque()
    following = iter(items)
    for item in itertools.islice(following, window):
        pending.append(pool.apply_async(fn, (item,)))
    while pending:
        result: T = pending.popleft().get()
        for item in itertools.islice(following, 1):
            pending.append(pool.apply_async(fn, (item,)))
        yield result


def _quiet_gc() -> None:
    import gc

    gc.disable()  # a worker's objects are short-lived and acyclic

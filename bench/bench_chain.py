"""Benchmark the log's hash chain: its share of an import, `forewarn verify`, and a schema 1 -> 2 upgrade.

    .venv/bin/python bench/bench_chain.py /tmp/lc.jsonl [-n 3]

Imports the JSONL file into a fresh log in this process (one validating process) and reports the CPU
seconds spent chaining (`Chain.rows`) against the whole import's; then times `forewarn verify` on that
log, and `forewarn upgrade` of a schema 1 copy of it (the hash column dropped, the version set back: as
forewarn wrote logs before the chain). Prints the median of -n runs of the commands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOREWARN = str(ROOT / ".venv" / "bin" / "forewarn")


def import_with_chain_share(jsonl: Path, db: Path) -> None:
    from forewarn.log import chain
    from forewarn.log.source import import_files
    from forewarn.log.store import EventStore

    real = chain.Chain.rows
    spent = [0.0]

    def timed(self: chain.Chain, rows, payload_at):  # type: ignore[no-untyped-def]
        t = time.process_time()
        out = real(self, rows, payload_at)
        spent[0] += time.process_time() - t
        return out

    chain.Chain.rows = timed  # type: ignore[method-assign]
    try:
        store = EventStore(db)
        cpu, wall = time.process_time(), time.perf_counter()
        import_files(store, [jsonl], workers=1)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        n = store.count()
        store.close()
    finally:
        chain.Chain.rows = real  # type: ignore[method-assign]
    print(f"import: {n} events, {wall:.2f} s wall, {cpu:.2f} s cpu, of which the chain {spent[0]:.2f} s"
          f" ({spent[0] / n * 1e6:.2f} us/event)")


def schema1_copy(db: Path, old: Path) -> None:
    shutil.copyfile(db, old)
    conn = sqlite3.connect(old)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("ALTER TABLE events DROP COLUMN hash")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.execute(
        "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
        "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END"
    )
    conn.commit()
    conn.close()


def timed_command(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([FOREWARN, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jsonl", type=Path)
    parser.add_argument("-n", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="forewarn-bench-chain-") as tmp:
        db, old = Path(tmp) / "log.db", Path(tmp) / "old.db"
        import_with_chain_share(args.jsonl, db)
        verify = [timed_command("verify", "--db", str(db)) for _ in range(args.n)]
        print(f"verify: median {statistics.median(verify):.2f} s wall (min {min(verify):.2f})")
        upgrade = []
        for _ in range(args.n):
            schema1_copy(db, old)
            upgrade.append(timed_command("upgrade", "--db", str(old)))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{old}{suffix}").unlink(missing_ok=True)
        print(f"upgrade 1 -> 2: median {statistics.median(upgrade):.2f} s wall (min {min(upgrade):.2f})")
        print(f"load average now: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""The write path of `POST /v1/events` in this process, without HTTP or the engine: microseconds per
event in each stage, for batches of 100 (as `bench_serve.py` posts them) committed 8 at a time.

    .venv/bin/python bench/bench_serve_stages.py [--batches 240]

Stages: the body parsed (`array_items`: orjson, is it a JSON array), validation (`validate_array`, pydantic:
the contract, with the rows and light data for the checks), the checks against the log and the insert with
its hash chain (`import_validated`, one savepoint per batch), the commit.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import customer, incident

from forewarn.log.bulk import import_validated, validate_array
from forewarn.log.store import open_store
from forewarn.policy.loader import load_policy
from forewarn.service import _open, array_items

GROUP = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=240)
    args = parser.parse_args()
    policy = load_policy()
    bodies = []
    for b in range(args.batches):
        cust = f"tp-{b}"
        events = [customer(cust, "basic")] + [incident(f"{cust}-{i}", cust, "minor") for i in range(99)]
        bodies.append(json.dumps(events).encode())
    spent = dict.fromkeys(("array_items", "validate", "check+insert", "commit"), 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "log.db"
        open_store(db).close()
        store = _open(str(db))
        for g in range(0, len(bodies), GROUP):
            ready = []
            for body in bodies[g : g + GROUP]:
                t = time.thread_time()
                items = array_items(body)
                t2 = time.thread_time()
                validated = validate_array(body, items)
                t3 = time.thread_time()
                assert validated is not None  # the common body: validated in one call
                ready.append(validated)
                spent["array_items"] += t2 - t
                spent["validate"] += t3 - t2
            t = time.thread_time()
            store.begin_exclusive()
            for validated in ready:
                appended, _, errors = import_validated(store, validated, "<request>", policy.ids, nested=True)
                assert appended == 100 and not errors, errors
                store.last_seq()
            t2 = time.thread_time()
            store.commit()
            spent["check+insert"] += t2 - t
            spent["commit"] += time.thread_time() - t2
        store.close()
    events = 100 * len(bodies)
    for stage, seconds in spent.items():
        print(f"{stage:<14} {1e6 * seconds / events:6.1f} µs/event")
    total = sum(spent.values())
    print(f"{'total':<14} {1e6 * total / events:6.1f} µs/event ({events / total:,.0f} events/s on one core)")


if __name__ == "__main__":
    main()

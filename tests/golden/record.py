"""Record the golden audit reports with the code as it is: `python tests/golden/record.py [NAME-PART ...]`.

Re-run it after a deliberate change of the reports and review `git diff tests/golden/reports`.
With arguments, only the cases whose name contains one of them are recorded."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import FORMATS, audit, cases, record, synth_log


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases():
            if argv and not any(part in case.name for part in argv):
                continue
            log, as_of = (case.log, case.as_of) if case.log is not None else synth_log(case, Path(tmp))
            reports = [audit(log, as_of, fmt) for fmt in FORMATS]
            record(case, as_of, reports)
            print(f"{case.name}: exit {reports[0].exit_code}, {reports[0].summary}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The `forewarn` program's quick `plan` (forewarn/program.py) answers as the CLI does, or leaves it to the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_published import SAMPLE, make_db

from forewarn import program
from forewarn.cli import main

AS_OF = "2026-02-10T09:00:00Z"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_db(tmp_path_factory.mktemp("program"))
    code, _out, err = cli(["plan", "--db", str(path), "--as-of", AS_OF])  # evaluates, publishes
    assert code == 0, err
    return path


def cli(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


def quick(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[bool, str, str]:
    answered = program.quick_plan(args)
    out, err = capsys.readouterr()
    return answered, out, err


@pytest.mark.parametrize(
    "args",
    [
        ["--db", "{db}", "--as-of", AS_OF],
        ["--db", "{db}", "--as-of", AS_OF, "--format", "json"],
        ["--format=json", "--as-of=2026-02-10T10:00:00+01:00", "--db={db}"],
        ["--db", "{db}", "--as-of", "2026-02-10T09:30:00Z", "--format", "table"],
        ["--db", "{db}", "--as-of", AS_OF, "--rules", "{rules}"],
    ],
)
def test_a_plain_plan_is_answered_from_the_published_plan_as_the_cli_answers_it(
    db: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(db=db, rules=POLICY_DIR) for a in args]
    answered, out, err = quick(args, capsys)
    assert answered
    assert "from the plan published in the log" in err
    assert (0, out, err) == cli(["plan", *args])


POLICY_DIR = Path(program.__file__).resolve().parents[1] / "rules"


@pytest.mark.parametrize(
    "args",
    [
        ["--db", "{db}", "--as-of", "yesterday"],  # the CLI says what is wrong
        ["--db", "{db}", "--as-of", "2026-02-10T09:00:00"],  # no offset
        ["--db", "{db}", "--format", "yaml"],
        ["--db", "{db}", "--db", "{db}"],
        ["--db", "{db}", "--as-of"],
        ["--db", "", "--as-of", AS_OF],
        ["--db", "{db}", "--help"],
        ["-h"],
        ["--db", "{db}", "--propose", "start=2026-03-01T00:00:00Z,end=2026-03-01T01:00:00Z,customers=all,impact=none"],
        ["--events", str(SAMPLE), "--as-of", AS_OF],
        ["--db", "{db}", "--as-of", AS_OF, "extra"],
        ["--db", "{db}", "--as-of", AS_OF, "--verbose"],
        ["--db", "{db}.jsonl", "--as-of", AS_OF],
        ["--db", "{db}-missing", "--as-of", AS_OF],
        ["--db", "{db}", "--rules", "{db}", "--as-of", AS_OF],  # a file, not a directory
        ["--db", "{db}", "--as-of", "2026-02-01T00:00:00Z"],  # before the published plan's as-of: evaluated
        ["--db", "{db}", "--rules", "{empty}", "--as-of", AS_OF],  # another policy: another key
    ],
)
def test_anything_else_is_left_to_the_cli_with_nothing_written(
    db: Path, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.format(db=db, empty=tmp_path / "empty") for a in args]
    assert quick(args, capsys) == (False, "", "")


def test_an_append_makes_the_published_plan_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from forewarn.events import parse_lines
    from forewarn.log.store import EventStore

    path = make_db(tmp_path)
    assert cli(["plan", "--db", str(path), "--as-of", AS_OF])[0] == 0
    assert quick(["--db", str(path), "--as-of", AS_OF], capsys)[0]
    line = '{"id": "late-1", "type": "customer.upserted", "at": "2026-02-09T00:00:00Z", "customer": "zz",'
    line += ' "name": "Zz", "plan": "enterprise", "timezone": "UTC", "contacts": ["ops@zz.example"]}'
    parsed, errors = parse_lines([line], "<test>")
    assert not errors
    store = EventStore(path)
    store.append(parsed)
    store.close()
    assert quick(["--db", str(path), "--as-of", AS_OF], capsys) == (False, "", "")


def test_the_installed_program_answers_a_plain_plan_without_loading_click(db: Path) -> None:
    code = (
        "import sys; from forewarn.program import main; sys.argv = ['forewarn', *sys.argv[1:]]; main(); "
        "print(sorted(m for m in ('click', 'pydantic', 'rich', 'orjson', 'forewarn.cli') if m in sys.modules),"
        " file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "plan", "--db", str(db), "--as-of", AS_OF, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "from the plan published in the log" in done.stderr
    assert done.stderr.strip().endswith("[]"), done.stderr
    assert done.stdout == cli(["plan", "--db", str(db), "--as-of", AS_OF, "--format", "json"])[1]


@pytest.mark.parametrize("quick_path", [True, False])
def test_a_stdout_that_is_not_utf8_still_gets_the_table(db: Path, quick_path: bool) -> None:
    """Found in review: the table's frame cannot be written to an ASCII stdout; it is written in UTF-8."""
    entry = "from forewarn.program import main" if quick_path else "from forewarn.cli import entry as main"
    code = f"import sys; {entry}; sys.argv = ['forewarn', *sys.argv[1:]]; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "plan", "--db", str(db), "--as-of", AS_OF],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert done.returncode == 0, done.stderr
    assert "from the plan published" in done.stderr.decode()
    assert done.stdout.decode("utf-8") == cli(["plan", "--db", str(db), "--as-of", AS_OF])[1]

"""Bad input never breaks anything: malformed logs and rule files give file:line errors (exit 2), no traceback."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import yaml
from click.testing import CliRunner, Result
from hypothesis import event, given, note
from hypothesis import strategies as st
from strategies import lifecycles, scaled

from forewarn.cli import main
from forewarn.events import EVENT_CLASSES
from forewarn.log import source

TESTS = Path(__file__).parent
ALL_TYPES = TESTS / "data" / "good" / "all-types.jsonl"
RULES = TESTS.parent / "rules"
AS_OF = "2026-06-30T00:00:00Z"
SUMMARY = re.compile(r"^forewarn: error: \d+ input error\(s\); nothing was changed$")

# --------------------------------------------------------------------------- running the CLI


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def no_traceback(result: Result) -> None:
    """Exited on purpose (SystemExit), with no Python traceback anywhere in the output."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}\n{result.output}") from result.exception
    assert "Traceback" not in result.output


def snapshot(db: Path) -> str:
    """A digest of every row of every table of the database (what 'unchanged' means)."""
    conn = sqlite3.connect(db)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows = {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in tables}
    finally:
        conn.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


# --------------------------------------------------------------------------- corrupting a log


@dataclass(frozen=True)
class Corruption:
    """What was done to which line, and whether the line alone is now bad (parse/validation error)."""

    line: int  # 1-based
    what: str
    local: bool = True


Lines = list[bytes]
Corrupt = Callable[[st.DrawFn, Lines, int], str]

WRONG_VALUES: list[object] = [None, 123, -1.5, {"a": [1]}, [[1]], True]
"""Values no required field accepts (True: but for `healthy`)."""
EDGE_TIMESTAMPS_BAD = [
    "0001-01-01T00:00:00+00:01",  # before year 1 once in UTC
    "9999-12-31T23:59:59-00:01",  # after year 9999 once in UTC
    "2026-02-30T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01T00:00:00",  # no offset
    "2026-03-01T00:00:00+25:00",
    "99999-01-01T00:00:00Z",
    "2026-03-01",
    "1e10",
]


def _obj(line: bytes) -> dict[str, object]:
    return json.loads(line)


def _dump(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def required_fields(event_type: str) -> list[str]:
    cls = EVENT_CLASSES[event_type]
    return [f.alias or name for name, f in cls.model_fields.items() if f.is_required() and name != "type"]


def truncate(draw: st.DrawFn, lines: Lines, i: int) -> str:
    cut = draw(st.integers(1, len(lines[i]) - 1))
    lines[i] = lines[i][:cut]
    return f"truncated at byte {cut}"


def wrong_type(draw: st.DrawFn, lines: Lines, i: int) -> str:
    obj = _obj(lines[i])
    field = draw(st.sampled_from(["id", "type", "at", *required_fields(str(obj["type"]))]))
    values = [v for v in WRONG_VALUES if not (field == "healthy" and v is True)]
    if field in ("customers", "to", "contacts"):
        values += [[], "some"] + ([["not an address"]] if field != "customers" else [])
    value = draw(st.sampled_from(values))
    obj[field] = value
    lines[i] = _dump(obj)
    return f"{field} = {value!r}"


def drop_field(draw: st.DrawFn, lines: Lines, i: int) -> str:
    obj = _obj(lines[i])
    field = draw(st.sampled_from(["id", "type", "at", *required_fields(str(obj["type"]))]))
    del obj[field]
    lines[i] = _dump(obj)
    return f"without {field}"


def unknown_field(draw: st.DrawFn, lines: Lines, i: int) -> str:
    obj = _obj(lines[i])
    name = draw(st.sampled_from(["statess", "customer_id", "Start", "meta2", "x"]))
    obj[name] = draw(st.sampled_from([1, "x", None]))
    lines[i] = _dump(obj)
    return f"unknown field {name}"


def huge(draw: st.DrawFn, lines: Lines, i: int) -> str:
    obj = _obj(lines[i])
    kind = draw(st.sampled_from(["long id", "big int", "long line", "big float"]))
    if kind == "long id":
        obj["id"] = "x" * draw(st.integers(201, 5000))
    elif kind == "big int":
        obj["meta"] = {"n": draw(st.sampled_from([2**64, -(2**63) - 1, 10**40]))}
    elif kind == "big float":
        lines[i] = _dump(obj)[:-1] + b', "meta": {"f": 1e999}}'
        return kind
    else:
        obj["meta"] = {"pad": "x" * (1 << 20)}
    lines[i] = _dump(obj)
    return kind


def bad_utf8(draw: st.DrawFn, lines: Lines, i: int) -> str:
    junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]))
    quote = lines[i].index(b'"', lines[i].index(b'"id"') + 4) + 1  # inside the id's value
    lines[i] = lines[i][:quote] + junk + lines[i][quote:]
    return f"bytes {junk!r}"


def deep(draw: st.DrawFn, lines: Lines, i: int) -> str:
    depth = draw(st.integers(1100, 5000))
    nested = b"[" * depth + b"]" * depth
    lines[i] = lines[i][:-1] + b', "meta": {"deep": ' + nested + b"}}"
    return f"nested {depth} deep"


def bad_time(draw: st.DrawFn, lines: Lines, i: int) -> str:
    obj = _obj(lines[i])
    fields = [f for f in ("at", "start", "end", "release_at", "next_update_by") if f in obj]
    field = draw(st.sampled_from(fields))
    obj[field] = draw(st.sampled_from(EDGE_TIMESTAMPS_BAD))
    lines[i] = _dump(obj)
    return f"{field} = {obj[field]}"


def bad_zone(draw: st.DrawFn, lines: Lines, i: int) -> str:
    obj = _obj(lines[i])
    if obj["type"] != "customer.upserted":
        return bad_time(draw, lines, i)
    field = draw(st.sampled_from(["timezone", "country"]))
    obj[field] = draw(st.sampled_from(["Mars/Olympus_Mons", "Europe/Berln", "", "UTC+2", "../../etc/passwd", "ZZ"]))
    lines[i] = _dump(obj)
    return f"{field} = {obj[field]!r}"


LOCAL: dict[str, Corrupt] = {
    "truncate": truncate,
    "wrong-type": wrong_type,
    "drop-field": drop_field,
    "unknown-field": unknown_field,
    "huge": huge,
    "bad-utf8": bad_utf8,
    "deep": deep,
    "bad-time": bad_time,
    "bad-zone": bad_zone,
}


def dangling(draw: st.DrawFn, lines: Lines, i: int) -> str | None:
    """A reference to an entity no event defines."""
    obj = _obj(lines[i])
    refs = [f for f in ("maintenance", "incident", "release", "communication", "in_reply_to") if f in obj]
    if obj["type"] == "waiver.granted":  # elsewhere `subject` is an e-mail's subject line
        refs.append("subject")
    if obj["type"] in ("maintenance.scheduled", "incident.declared", "release.scheduled", "communication.sent"):
        refs = [f for f in refs if f not in ("maintenance", "incident", "release", "communication")]
        if obj["type"] == "communication.sent" or obj.get("customers") != "all":
            refs.append("customer" if obj["type"] == "communication.sent" else "customers")
    if not refs:
        return None
    field = draw(st.sampled_from(refs))
    obj[field] = ["nobody"] if field == "customers" else "nothing-by-this-id"
    lines[i] = _dump(obj)
    return f"{field} refers to nothing"


def _id_of(line: bytes) -> object:
    """The line's id, if the line is (still) a JSON object with a string id."""
    try:
        obj = json.loads(line.decode("utf-8"))  # strictly: no lone surrogates
    except (ValueError, RecursionError):
        return None
    return obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None


def duplicate_id(draw: st.DrawFn, lines: Lines, i: int) -> int | None:
    """Another line's id on a line with different content; that other line (0-based)."""
    others = [j for j in range(len(lines)) if j != i and _id_of(lines[j]) not in (None, _id_of(lines[i]))]
    if not others:
        return None
    j = draw(st.sampled_from(others))
    obj = _obj(lines[i])
    obj["id"] = _id_of(lines[j])
    lines[i] = _dump(obj)
    return j


@st.composite
def base_logs(draw: st.DrawFn) -> Lines:
    """A valid log: the fixture with every event type, or a generated lifecycle."""
    if draw(st.booleans()):
        return [line.strip().encode() for line in ALL_TYPES.read_text(encoding="utf-8").splitlines() if line.strip()]
    life = draw(lifecycles(max_customers=2, max_maintenances=1))
    return [line.encode() for line in life.jsonl().splitlines()]


@st.composite
def corrupted_logs(draw: st.DrawFn) -> tuple[Lines, list[Corruption]]:
    """A valid log with one to three lines corrupted so that the log is certainly invalid."""
    lines = draw(base_logs())
    done: list[Corruption] = []
    targets = draw(st.lists(st.integers(0, len(lines) - 1), min_size=1, max_size=3, unique=True))
    for i in targets:
        name = draw(st.sampled_from([*LOCAL, "dangling", "duplicate-id"]))
        if name in LOCAL:
            done.append(Corruption(i + 1, f"{name}: {LOCAL[name](draw, lines, i)}"))
            continue
        what = dangling(draw, lines, i) if name == "dangling" else duplicate_id(draw, lines, i)
        if what is None:
            done.append(Corruption(i + 1, f"truncate: {truncate(draw, lines, i)}"))
        elif isinstance(what, int):  # reported on whichever of the two lines comes later
            done.append(Corruption(i + 1, f"{name}: same id as line {what + 1}", local=False))
            done.append(Corruption(what + 1, f"{name}: same id as line {i + 1}", local=False))
        else:
            done.append(Corruption(i + 1, f"{name}: {what}", local=False))
    return lines, done


def check_errors(result: Result, files: dict[str, int], corruptions: list[Corruption], name: str) -> None:
    """Exit 2; every stderr line is `file:line: ...` but the closing summary; the corrupted lines are named."""
    no_traceback(result)
    assert result.exit_code == 2, result.output
    errors = result.stderr.splitlines()
    assert errors and SUMMARY.match(errors[-1]), result.stderr
    located = set()
    for line in errors[:-1]:
        m = re.match(r"^(.+?):(\d+): \S", line)
        assert m is not None and m.group(1) in files, f"not file:line: {line!r}"
        assert 1 <= int(m.group(2)) <= files[m.group(1)], line
        located.add((m.group(1), int(m.group(2))))
    named = {c.line for c in corruptions if (name, c.line) in located}
    assert named, f"no error names a corrupted line of {name}: {result.stderr}"
    # an over-long line is the last one read of its file
    last = min((c.line for c in corruptions if c.what.endswith(": long line")), default=files[name])
    if any(c.local for c in corruptions):
        assert {c.line for c in corruptions if c.local and c.line <= last} <= named, result.stderr


# --------------------------------------------------------------------------- the log properties


@scaled(ci=80, thorough=10_000)
@given(corrupted_logs())
def test_a_bad_import_exits_2_names_file_and_line_and_leaves_the_database_alone(
    case: tuple[Lines, list[Corruption]],
) -> None:
    lines, corruptions = case
    note("corruptions: " + "; ".join(f"line {c.line}: {c.what}" for c in corruptions))
    for c in corruptions:
        event(c.what.split(":")[0])
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "log.db"
        good = Path(tmp) / "good.jsonl"
        good.write_text(ALL_TYPES.read_text(encoding="utf-8"), encoding="utf-8")
        assert run("import", str(good), "--db", str(db)).exit_code == 0
        before = snapshot(db)
        bad = Path(tmp) / "bad.jsonl"
        bad.write_bytes(b"\n".join(lines) + b"\n")
        # a valid file first, so errors must name the right file
        result = run("import", str(good), str(bad), "--db", str(db))
        check_errors(result, {str(good): 20, str(bad): len(lines)}, corruptions, str(bad))
        assert snapshot(db) == before


def checks_apart(apart: bool) -> contextlib.AbstractContextManager[object]:
    """With `apart`, audit --events checks even a small log in a forked child while it evaluates
    (forewarn.log.source.load_files_checking), as it does a large one."""
    return mock.patch.object(source, "CHECKS_APART_MIN", 0) if apart else contextlib.nullcontext()


@scaled(ci=80, thorough=10_000)
@given(corrupted_logs(), st.booleans())
def test_a_bad_log_given_to_audit_exits_2_naming_file_and_line(
    case: tuple[Lines, list[Corruption]], apart: bool
) -> None:
    lines, corruptions = case
    note("corruptions: " + "; ".join(f"line {c.line}: {c.what}" for c in corruptions))
    with tempfile.TemporaryDirectory() as tmp, checks_apart(apart):
        bad = Path(tmp) / "bad.jsonl"
        bad.write_bytes(b"\n".join(lines) + b"\n")
        result = run("audit", "--events", str(bad), "--as-of", AS_OF, "--format", "json")
        check_errors(result, {str(bad): len(lines)}, corruptions, str(bad))
        assert result.stdout == ""


EDGE_VALUES: list[object] = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999+14:00",
    "1970-01-01T00:00:00Z",
    "2038-01-19T03:14:08Z",
    "2026-03-29T01:30:00+01:00",
]


@st.composite
def edgy_logs(draw: st.DrawFn) -> tuple[Lines, str]:
    """A valid-looking log with one timestamp moved to the edge of the representable range (may be valid)."""
    lines = draw(base_logs())
    i = draw(st.integers(0, len(lines) - 1))
    obj = _obj(lines[i])
    fields = [f for f in ("at", "start", "end", "release_at", "next_update_by") if f in obj]
    field = draw(st.sampled_from(fields))
    obj[field] = draw(st.sampled_from(EDGE_VALUES))
    lines[i] = _dump(obj)
    return lines, f"line {i + 1}: {field} = {obj[field]}"


@scaled(ci=60, thorough=10_000)
@given(edgy_logs(), st.sampled_from([AS_OF, "9999-12-31T23:59:59Z", "0001-01-02T00:00:00Z", "now"]), st.booleans())
def test_timestamps_at_the_edges_never_break_import_or_audit(case: tuple[Lines, str], as_of: str, apart: bool) -> None:
    """Valid or not, an edge timestamp gives a verdict (0, 1) or file:line errors (2): never a traceback."""
    lines, what = case
    note(what)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "edge.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        with checks_apart(apart):
            audited = run("audit", "--events", str(path), "--as-of", as_of, "--format", "json")
        no_traceback(audited)
        assert audited.exit_code in (0, 1, 2), audited.output
        event(f"audit exit {audited.exit_code}")
        db = Path(tmp) / "log.db"
        imported = run("import", str(path), "--db", str(db))
        no_traceback(imported)
        assert imported.exit_code in (0, 2)
        assert (imported.exit_code == 2) == (audited.exit_code == 2), (imported.output, audited.output)
        if imported.exit_code == 0:
            from_db = run("audit", "--db", str(db), "--as-of", as_of, "--format", "json")
            no_traceback(from_db)
            assert from_db.exit_code == audited.exit_code
            if as_of != "now":  # "now" moves between the two runs
                assert from_db.stdout == audited.stdout


def test_the_installed_command_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    """A few corruptions through the real console script, in a subprocess."""
    good = [line.strip() for line in ALL_TYPES.read_text(encoding="utf-8").splitlines()]
    cases = {
        "truncated": "\n".join([*good[:3], good[3][:40], *good[4:]]),
        "invalid-utf8": "\n".join(good[:5]).replace('"e5"', '"e\udcff5"'),
        "dangling": "\n".join([*good[:4], good[5].replace('"c-1"', '"c-404"')]),
    }
    exe = Path(sys.executable).parent / "forewarn"
    for name, text in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(text.encode("utf-8", "surrogateescape") + b"\n")
        for args in (["import", str(path), "--db", str(tmp_path / "log.db")], ["audit", "--events", str(path)]):
            proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2, (name, proc.stderr)
            assert "Traceback" not in proc.stderr + proc.stdout
            assert re.search(rf"{re.escape(str(path))}:\d+: ", proc.stderr), proc.stderr
    assert not (tmp_path / "log.db").exists() or snapshot_rows(tmp_path / "log.db") == 0


def snapshot_rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


# --------------------------------------------------------------------------- rule files

LINT_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<code>[a-z][a-z-]*): \S.*$")
ODD_VALUES: list[object] = [0, -1, 10**6, 2**70, 1.5, "x", "$nope", "", [], {}, None, True, ["a", 1], {"at": 3}]
GARBAGE = [
    ": : :",
    "- [",
    "{",
    "\tkey: value",
    "&a [*a]",
    "!!python/object/apply:os.system ['echo hi']",
    "key: !!binary AAAA",
    "? complex key",
    "'unterminated",
    "%YAML 9.9",
    "---\nsecond: document",
    "\x00",
    "ünïcödé: ✓",
    "<<: *undefined",
]


def paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every key path of a parsed YAML document (mappings and sequences)."""
    out: list[tuple[object, ...]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out.extend(paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*prefix, i))
            out.extend(paths(v, (*prefix, i)))
    return out


def at_path(doc: object, path: tuple[object, ...]) -> tuple[object, object]:
    parent = doc
    for part in path[:-1]:
        parent = parent[part]  # type: ignore[index]
    return parent, path[-1]


def mutate_rule(draw: st.DrawFn, text: str) -> tuple[str, str]:
    """One random change to a rule file: a key renamed, a value of another type, a key gone, or YAML garbage."""
    how = draw(st.sampled_from(["rename", "retype", "delete", "garbage"]))
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:  # an earlier change already broke it: break it some more
        doc = None
    keys = paths(doc)
    if how == "garbage" or not keys:
        lines = text.splitlines()
        i = draw(st.integers(0, len(lines)))
        junk = draw(st.sampled_from(GARBAGE))
        return "\n".join([*lines[:i], junk, *lines[i:]]) + "\n", f"garbage at line {i + 1}: {junk!r}"
    path = draw(st.sampled_from(keys))
    parent, last = at_path(doc, path)
    if how == "rename" and isinstance(parent, dict):
        new = draw(st.sampled_from([str(last)[:-1] or "k", str(last) + "s", str(last).upper(), "unknown", "1"]))
        parent[new] = parent.pop(last)
        what = f"renamed {path} to {new!r}"
    elif how == "delete":
        parent.pop(last)  # type: ignore[union-attr]
        what = f"deleted {path}"
    else:
        parent[last] = draw(st.sampled_from(ODD_VALUES))  # type: ignore[index]
        what = f"{path} = {parent[last]!r}"  # type: ignore[index]
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), what




@scaled(ci=80, thorough=10_000)
@given(st.data())
def test_rules_lint_on_mutated_rule_files_exits_0_or_2_with_file_line_code_message(data: st.DataObject) -> None:
    """Lint never crashes; a policy it passes also loads and audits a log without a traceback."""
    names = sorted(p.name for p in RULES.glob("*.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "rules"
        shutil.copytree(RULES, directory, ignore=shutil.ignore_patterns("fixtures", "__*"))
        for _ in range(data.draw(st.integers(1, 3), label="changes")):
            name = data.draw(st.sampled_from(names), label="file")
            path = directory / name
            text, what = mutate_rule(data.draw, path.read_text(encoding="utf-8"))
            note(f"{name}: {what}")
            path.write_text(text, encoding="utf-8")
        result = run("rules", "lint", str(directory))
        no_traceback(result)
        assert result.exit_code in (0, 2), result.output
        event(f"lint exit {result.exit_code}")
        if result.exit_code == 2:
            problems = result.stdout.splitlines()  # one `file:line: code: message` per problem (BUG-6)
            assert problems, result.output
            for line in problems:
                m = LINT_LINE.match(line)
                assert m is not None, f"not file:line: code: message: {line!r}"
                assert Path(m.group("file")).parent == directory, line
            audited = run("audit", "--events", str(ALL_TYPES), "--rules", str(directory), "--as-of", AS_OF)
            no_traceback(audited)
            assert audited.exit_code == 2, audited.output
        else:
            audited = run("audit", "--events", str(ALL_TYPES), "--rules", str(directory), "--as-of", AS_OF)
            no_traceback(audited)
            assert audited.exit_code in (0, 1, 2), audited.output

"""The README's shell commands run as written on a fresh clone after `make demo` and `make test`.

Every fenced `sh` block is run line by line in a copy of the project's layout (the sources linked, the
outputs in a temp dir), with the virtualenv on PATH as `source .venv/bin/activate` would put it. A
command ending in `# exit N` must exit N, every other one 0; a `text` block right after an `sh` block
holds lines the block's last command must print. `make demo` is run as the program it calls and
`make test` is this test suite itself. The demo's own "Next, try" commands are run the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LEFT_OUT = {"forewarn.db", "forewarn-demo", "outbox", "site", "engine.db", "q1.html", "q1.sarif"}


def blocks(markdown: str) -> list[tuple[list[str], list[str]]]:
    """(commands of an sh block, lines of the text block that follows it, if any)."""
    fences = re.findall(r"```(\w*)\n(.*?)```", markdown, re.S)
    out = []
    for i, (lang, body) in enumerate(fences):
        if lang != "sh":
            continue
        commands = [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        after = fences[i + 1][1].splitlines() if i + 1 < len(fences) and fences[i + 1][0] == "text" else []
        out.append((commands, [line for line in after if line.strip()]))
    return out


def expected_status(command: str) -> int:
    found = re.search(r"#\s*exit (\d+)\s*$", command)
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A directory laid out like the project (its files linked) after `make demo`, and what the demo printed."""
    here = tmp_path_factory.mktemp("clone")
    for entry in ROOT.iterdir():
        if entry.name not in LEFT_OUT:
            (here / entry.name).symlink_to(entry)
    if not (here / ".venv").exists():
        (here / ".venv").symlink_to(BIN.parent)
    done = run("make demo", here, activated=False)  # what make demo runs, once .venv exists
    assert done.returncode == 0, done.stderr
    return here, done.stdout


def run(command: str, cwd: Path, activated: bool = True) -> subprocess.CompletedProcess[str]:
    """`command` in bash; with the virtualenv on PATH when `activated` (never, when not)."""
    command = re.sub(r"\s+#.*$", "", command)
    words = shlex.split(command)
    if words[:2] == ["make", "demo"]:
        command = ".venv/bin/forewarn demo"
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != BIN.resolve()]
    env = {**os.environ, "PATH": os.pathsep.join([str(BIN)] * activated + path), "COLUMNS": "120"}
    env.pop("FOREWARN_DB", None)
    env.pop("NO_COLOR", None)
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_readme_is_short_and_has_commands_for_each_use() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) <= 10_000
    commands = [c for cmds, _ in blocks(text) for c in cmds]
    for needed in ("make demo", "make test", "forewarn audit", "forewarn plan", "forewarn run", "forewarn rules test"):
        assert any(needed in c for c in commands), needed


def test_every_readme_command_runs_as_written(clone: tuple[Path, str]) -> None:
    folder, _ = clone
    for commands, expected in blocks((ROOT / "README.md").read_text(encoding="utf-8")):
        done = None
        for command in commands:
            skip = (["make", "demo"], ["make", "test"], ["source", ".venv/bin/activate"])
            if command.split("#")[0].split() in skip:
                continue  # the fixture ran the demo; make test is this suite; PATH is set as activate sets it
            done = run(command, folder)
            assert done.returncode == expected_status(command), f"{command}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        if expected and done is not None:
            printed = done.stdout + done.stderr
            for line in expected:
                assert line.strip() in printed, f"{commands[-1]}: missing {line!r}\n{printed[-3000:]}"


def test_the_demo_ends_with_commands_that_run_as_printed(clone: tuple[Path, str]) -> None:
    folder, printed = clone
    tail = printed.split("Next, try (from this directory):\n", 1)[1]
    commands = [line.strip() for line in tail.splitlines() if line.strip()]
    assert len(commands) >= 4 and all(c.startswith(".venv/bin/forewarn ") for c in commands)
    assert "source .venv/bin/activate" in printed
    for command in commands:
        result = run(command, folder, activated=False)
        wanted = 1 if " audit " in command else 0  # the seeded sample has violations
        assert result.returncode == wanted, f"{command}\n{result.stderr[-2000:]}"

"""The documentation: generated pages match the code, every lint code is documented, and the site builds strictly."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import gen  # noqa: E402

sys.path.pop(0)


def test_the_generated_pages_match_the_code() -> None:
    assert gen.stale() == [], "run `python docs/gen.py`"


def test_the_generated_pages_change_with_the_code(monkeypatch) -> None:
    from forewarn.policy import schema

    monkeypatch.setitem(schema.LINT_CODES, "made-up-code", "a code only this test knows")
    assert ROOT / "docs" / "reference" / "rule-vocabulary.md" in gen.stale()


def test_every_lint_code_the_linter_reports_is_documented() -> None:
    """The codes passed to LintError(file, line, CODE, ...), err(loc, CODE, ...) and YamlError(line, message,
    CODE) (its default code included) in the loader and the YAML reader."""
    from forewarn.policy.schema import LINT_CODES

    used = set()
    calls = {"LintError": 2, "err": 1, "YamlError": 2}  # the position of the code among each call's arguments
    for module in ("loader.py", "yamlsrc.py"):
        tree = ast.parse((ROOT / "forewarn" / "policy" / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in calls:
                position = calls[node.func.id]
                arg = node.args[position] if len(node.args) > position else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    used.add(arg.value)
            if isinstance(node, ast.FunctionDef) and node.name == "__init__" and module == "yamlsrc.py":
                defaults = node.args.defaults
                used |= {d.value for d in defaults if isinstance(d, ast.Constant) and isinstance(d.value, str)}
    assert len(used) >= 15
    assert used <= set(LINT_CODES), used - set(LINT_CODES)
    assert set(LINT_CODES) <= used, set(LINT_CODES) - used


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pages = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {"reference/cli/index.html", "reference/rule-vocabulary/index.html", "events/index.html"} <= pages


def test_the_readme_links_into_the_documentation() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in ("docs/events.md", "docs/policy.md", "docs/reports.md", "docs/reference/cli.md",
                 "docs/reference/rule-vocabulary.md", "docs/performance.md", "docs/architecture.md"):
        assert f"]({page}" in readme, page
        assert (ROOT / page).exists(), page

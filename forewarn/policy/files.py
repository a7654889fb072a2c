"""Where a policy's rule files are (no parsing: cheap to import)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_RULES_DIR = Path(__file__).resolve().parent.parent.parent / "rules"


def default_rules_dir() -> Path:
    """The project's rules/ (source checkout or installed package data)."""
    if DEFAULT_RULES_DIR.is_dir():
        return DEFAULT_RULES_DIR
    import forewarn.rules as packaged  # installed: rules/ ships as package data

    return Path(packaged.__file__).parent


SCOPE_FILE = "_scope.yaml"
"""The policy's scope (which customers it covers), beside the rule files; absent: the default scope."""


def rule_files(directory: Path) -> list[Path]:
    """The rule files of a policy directory, in load order (names starting with `_` are not rules)."""
    found = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    return [p for p in found if not p.name.startswith("_")]


def policy_files(directory: Path) -> list[Path]:
    """Every file the policy of a directory is read from: its rule files and its scope file, if any."""
    scope = directory / SCOPE_FILE
    return rule_files(directory) + ([scope] if scope.is_file() else [])

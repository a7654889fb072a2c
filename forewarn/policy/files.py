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


def rule_files(directory: Path) -> list[Path]:
    """The rule files of a policy directory, in load order."""
    return sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))

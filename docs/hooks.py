"""MkDocs hook: the build fails when a generated page (docs/gen.py) differs from what the code gives."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError


def on_pre_build(config: Any) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import gen
    finally:
        sys.path.pop(0)
    stale = gen.stale()
    if stale:
        names = ", ".join(str(p.relative_to(gen.DOCS.parent)) for p in stale)
        raise PluginError(f"{names} out of date: run `python docs/gen.py`")

"""Golden files: compare, and regenerate only when asked.

`UPDATE_GOLDEN=1 pytest ...` rewrites a golden file that differs and prints the unified diff of
what changed (shown with `-s`, and kept in the test report); any other value, or none, only
compares. A missing golden file fails with the command that creates it.
"""
from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def diff_text(expected: str, actual: str, name: str) -> str:
    return "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                        f"{name} (golden)", f"{name} (now)"))


def check_golden(path: Path, text: str) -> None:
    """Assert `text` equals the golden file at `path`; with UPDATE_GOLDEN=1, rewrite it and show the diff."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    if UPDATE:
        if old != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            sys.stdout.write(f"\nupdated {path}:\n{diff_text(old, text, path.name)}")
        return
    assert path.exists(), f"{path} is missing: create it with UPDATE_GOLDEN=1 pytest {path.parent.parent}"
    assert text == old, (f"{path.name} differs from its golden file; if intended, rerun with UPDATE_GOLDEN=1:\n"
                         + diff_text(old, text, path.name)[:4000])

"""The JSON money rule (infra/core/money.py), as a check the command tests run over their output.

Money is a decimal string in USD under a key path that names `usd`; percentages (keys ending in
`pct`) and counts are JSON numbers; `null` is allowed everywhere. The resources' own inputs (the
engine's, not ours) are not checked.
"""
from __future__ import annotations

import re
from typing import Any

DECIMAL = re.compile(r"-?\d+(\.\d+)?")
SKIPPED = {"resources"}  # Pulumi resource inputs, as the engine sees them


def money_rule_problems(doc: Any, path: tuple[str, ...] = ()) -> list[str]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() if k not in SKIPPED for p in money_rule_problems(v, (*path, str(k)))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in money_rule_problems(v, (*path, f"[{i}]"))]
    where = ".".join(path)
    keys = [k for k in path if not k.startswith("[")]
    leaf = keys[-1] if keys else ""
    if doc is None:
        return []
    if leaf.endswith("pct"):
        ok = isinstance(doc, (int, float)) and not isinstance(doc, bool)
        return [] if ok else [f"{where}: a percentage must be a JSON number, not {doc!r}"]
    if any("usd" in k for k in keys):
        ok = isinstance(doc, str) and DECIMAL.fullmatch(doc)
        return [] if ok or leaf in ("price_source", "source") else [f"{where}: money must be a decimal string, not {doc!r}"]
    if isinstance(doc, str) and DECIMAL.fullmatch(doc):
        return [f"{where}: {doc!r} is a number written as a string outside a usd key"]
    return []


def assert_money_rule(doc: Any) -> None:
    problems = money_rule_problems(doc)
    assert not problems, "\n".join(problems[:20])

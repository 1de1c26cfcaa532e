"""Simulation results kept for the process, keyed by everything a run depends on.

Runs are deterministic by seed, so equal inputs give equal results: two stacks that differ
only in region (prod and its second region) simulate their knees and scenarios once.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Callable, TypeVar

T = TypeVar("T")

_MEMO_SIZE = 512
_memo: OrderedDict[str, object] = OrderedDict()
_memo_lock = threading.Lock()


def memoised(inputs: tuple, compute: Callable[[], T]) -> T:
    """`compute()`, or its result from an earlier call with equal `inputs` (reprs compared)."""
    key = hashlib.sha256(repr(inputs).encode()).hexdigest()
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]  # type: ignore[return-value]
    value = compute()
    with _memo_lock:
        _memo[key] = value
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return value


def clear() -> None:
    """Forget every kept result (benchmarks time the simulations themselves)."""
    with _memo_lock:
        _memo.clear()

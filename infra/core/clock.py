"""The one clock date checks read (EKS support windows): today, unless injected.

`LLM_FLEET_TODAY=YYYY-MM-DD` fixes the date for a process and its children (the test suite sets
it to the EKS catalog's date, so no test turns red on a calendar day); `today()` reads it on
every call. Pure: no cloud SDK.
"""
from __future__ import annotations

import os
from datetime import date

TODAY_ENV = "LLM_FLEET_TODAY"


def today() -> date:
    """The injected date if `LLM_FLEET_TODAY` is set, else the machine's (UTC-agnostic) today."""
    override = os.environ.get(TODAY_ENV, "").strip()
    if not override:
        return date.today()
    try:
        return date.fromisoformat(override)
    except ValueError:
        raise ValueError(f"{TODAY_ENV}={override!r} is not a date like 2026-12-01") from None

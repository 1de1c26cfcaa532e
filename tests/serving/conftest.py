"""Fixtures: the prod stack's serving spec, a contrasting variant, and one mock run of Serving."""
from __future__ import annotations

import pytest

from infra.program.serving.spec import ServingSpec

from .support import run_serving, spec_for

_RUNS: dict[str, object] = {}


@pytest.fixture(scope="session")
def prod_spec() -> ServingSpec:
    return spec_for("prod")


@pytest.fixture(scope="session", params=["prod", "8b-tp1"])
def any_spec(request) -> ServingSpec:
    return spec_for(request.param)


@pytest.fixture(scope="session")
def serving_run(prod_spec):
    """Serving for the prod stack, registered once under the offline plan's mocks."""
    if "prod" not in _RUNS:
        _RUNS["prod"] = run_serving(prod_spec)
    return _RUNS["prod"]

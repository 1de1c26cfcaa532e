from pathlib import Path

import pytest

from tests.moto_support import moto_server
from rollout_support import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto in server mode on loopback (no AWS); dummy credentials for boto3."""
    with moto_server() as endpoint:
        yield endpoint

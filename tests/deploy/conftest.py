import pytest

from tests.moto_support import moto_server


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto in server mode on loopback (no AWS); dummy credentials for boto3."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def prod_run():
    """The prod stack's offline plan (both projects under mocks), computed once."""
    from tests.program.support import run_variant

    return run_variant()

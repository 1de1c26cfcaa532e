import pytest

from tests.program.support import run_variant


def pytest_collection_modifyitems(items):
    # pulumi_aws warns about its own deprecated v2 aliases when its s3 module is imported.
    for item in items:
        if "tests/program" in str(item.path):
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))


@pytest.fixture(scope="session")
def prod_run():
    """The prod stack's offline plan (the real program under mocks), computed once."""
    return run_variant()

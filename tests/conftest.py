import pytest

from tgi_endpoint import TgiEndpoint, refused_url


@pytest.fixture
def tgi_endpoint():
    """A scripted text-generation-inference endpoint on 127.0.0.1 (see tests/tgi_endpoint.py)."""
    with TgiEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def closed_port_url() -> str:
    """A URL where nothing listens: connecting is refused."""
    return refused_url()

import signal

import pytest

from tgi_endpoint import TgiEndpoint, refused_url


def pytest_sessionstart(session) -> None:
    """The programs the tests start get SIGINT's and SIGHUP's usual actions, however the run
    was started: a run in the background of a script (SIGINT ignored) or under nohup (SIGHUP
    ignored) passes the ignoring on to every program it starts, as it means to, and the tests
    of Ctrl-C and of a closed terminal then failed. An ignored signal is inherited across exec;
    a handler is not."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture
def tgi_endpoint():
    """A scripted text-generation-inference endpoint on 127.0.0.1 (see tests/tgi_endpoint.py)."""
    with TgiEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def closed_port_url() -> str:
    """A URL where nothing listens: connecting is refused."""
    return refused_url()


@pytest.fixture
def silent_url():
    """A URL where a socket listens and never answers, not even GET /info: connections
    complete (the kernel's backlog accepts them) and then nothing comes back."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="session")
def bundled_model():
    """The bundled model in this process (the local backend, one sequence, the Falcon-style
    prompt), loaded once for the whole test session. Tests that need other settings (several
    sequences, a format, a context length, a thread policy of their own) build their own."""
    from falconchat.backends.local import LocalBackend
    from falconchat.config_models import ModelSpec

    backend = LocalBackend(ModelSpec(name="smollm2", backend="local"))
    yield backend
    backend.close()

"""`debug` is decided once, from the settings: FALCONCHAT_DEBUG=1 in a .env file gives the
traceback of an unexpected error, as --debug and the variable do (the .env file was read for
every other setting but missed the traceback path)."""

from __future__ import annotations

import subprocess

import pytest

from processes import FALCONCHAT, isolated_env

pytestmark = pytest.mark.process  # the real falconchat, its stdout a full disk

ERROR = "falconchat: error: unexpected OSError: [Errno 28] No space left on device"


def ask_into_a_full_disk(home, url: str, *flags: str, **variables: str) -> tuple[int, str]:
    """`ask` with stdout on /dev/full: writing the reply fails, an error no command expects."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [*FALCONCHAT, "ask", *flags, "--endpoint", url, "hi"],
            cwd=home,
            env=isolated_env(home, **variables),
            stdin=subprocess.DEVNULL,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    return done.returncode, done.stderr.decode()


def test_without_debug_an_unexpected_error_is_one_line(tmp_path, tgi_endpoint):
    tgi_endpoint.stream([" Hello"], "eos_token")
    code, err = ask_into_a_full_disk(tmp_path, tgi_endpoint.url)
    assert code == 1
    assert err.splitlines() == [f"{ERROR} (run with --debug for details)"], err


@pytest.mark.parametrize("where", ["dotenv", "environment", "flag"])
def test_debug_from_any_source_shows_the_traceback(tmp_path, tgi_endpoint, where):
    tgi_endpoint.stream([" Hello"], "eos_token")
    flags: tuple[str, ...] = ()
    variables = {}
    if where == "dotenv":
        (tmp_path / ".env").write_text("FALCONCHAT_DEBUG=1\n")
    elif where == "environment":
        variables["FALCONCHAT_DEBUG"] = "1"
    else:
        flags = ("--debug",)
    code, err = ask_into_a_full_disk(tmp_path, tgi_endpoint.url, *flags, **variables)
    assert code == 1
    assert err.startswith("Traceback (most recent call last):"), err
    assert "OSError: [Errno 28] No space left on device" in err
    assert err.splitlines()[-1].startswith(ERROR), err

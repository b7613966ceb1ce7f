"""`ask -f/--file` and `--sf` in real processes against the scripted TGI endpoint: the exact
prompt the endpoint received (blocks, order, names, the system placement), the budget check
(one line naming the largest sources, nothing sent, exit 2) and refusals that never hang,
permission denied included (run without root's power to read anything, so also as root)."""

from __future__ import annotations

import os
import subprocess

import pytest

from processes import FALCONCHAT, falconchat, isolated_env, one_error_line

pytestmark = pytest.mark.process


def run(*args: str, cwd, input: bytes | None = None, timeout: float = 60, unprivileged: bool = False):
    return falconchat(
        "ask", "--no-log", *args, cwd=cwd, env=isolated_env(cwd), input=input, timeout=timeout,
        unprivileged=unprivileged,
    )  # fmt: skip


def test_a_git_diff_on_stdin_and_a_file_reach_the_model_as_named_blocks_in_order(tgi_endpoint, tmp_path):
    """`git diff | falconchat ask -f - -f CONTRIBUTING.md "…"`: stdin's block, the file's, then the words."""
    tgi_endpoint.stream([" Looks", " fine."], "eos_token")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "app.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=tmp_path, check=True)
    (tmp_path / "app.py").write_text("x = 2\n")
    (tmp_path / "CONTRIBUTING.md").write_text("Rule: small commits.\n")
    command = (
        "git diff | "
        + " ".join([*FALCONCHAT, "ask", "--no-log", "--endpoint", tgi_endpoint.url])
        + " -f - -f CONTRIBUTING.md 'does this follow the rules?'"
    )
    done = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=isolated_env(tmp_path), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "Looks fine.\n"
    diff = subprocess.run(["git", "diff"], cwd=tmp_path, capture_output=True, check=True).stdout.decode()
    [request] = tgi_endpoint.requests
    assert request.body["inputs"] == (
        "User: ----- BEGIN stdin -----\n" + diff + "----- END stdin -----\n\n"
        "----- BEGIN CONTRIBUTING.md -----\nRule: small commits.\n----- END CONTRIBUTING.md -----\n\n"
        "does this follow the rules?\nAssistant:"
    )


def test_sf_goes_into_the_system_message_and_a_folder_into_the_message(tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Yes."], "eos_token")
    (tmp_path / "rules.md").write_text("Be brief.\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "b.py").write_text("b = 2\n")
    (tmp_path / "src" / "a.py").write_text("a = 1\n")
    (tmp_path / "src" / "blob.bin").write_bytes(b"\0\1\2")
    done = run("--endpoint", tgi_endpoint.url, "-s", "You review code.", "--sf", "rules.md", "-f", "src", "ok?",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert "src: 2 files read; skipped 1 binary (blob.bin)" in done.stderr.decode()
    [request] = tgi_endpoint.requests
    assert request.body["inputs"] == (
        "System:You review code.\n\n----- BEGIN rules.md -----\nBe brief.\n----- END rules.md -----\n"
        "User: ----- BEGIN src/a.py -----\na = 1\n----- END src/a.py -----\n\n"
        "----- BEGIN src/b.py -----\nb = 2\n----- END src/b.py -----\n\nok?\nAssistant:"
    )


def test_sources_that_do_not_fit_are_named_and_nothing_is_sent(tgi_endpoint, tmp_path):
    """The scripted endpoint's context is 2048 tokens (512 for the reply): 30 KB cannot fit."""
    tgi_endpoint.stream([" never"], "eos_token")
    (tmp_path / "big.log").write_text("line of a log\n" * 2200)
    (tmp_path / "small.txt").write_text("short\n")
    done = run("--endpoint", tgi_endpoint.url, "-f", "small.txt", "-f", "big.log", "summarise", cwd=tmp_path)
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert "the attached sources do not fit" in line and "nothing was sent" in line
    assert line.index("big.log") < line.index("small.txt")  # the largest first
    assert "more than the 1536 that fit" in line
    assert tgi_endpoint.requests == []  # the generate API never called


@pytest.mark.parametrize("source", ["/dev/zero", "fifo", "missing.txt", "app.bin"])
def test_a_source_that_cannot_be_read_is_one_line_exit_2_and_never_hangs(tgi_endpoint, tmp_path, source):
    os.mkfifo(tmp_path / "fifo")  # nothing ever writes to it: reading it would block forever
    (tmp_path / "app.bin").write_bytes(b"\x7fELF\0\0\0")
    done = run("--endpoint", tgi_endpoint.url, "-f", source, "what is this?", cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    assert one_error_line(done.stderr).startswith(f"falconchat: error: cannot read {source}: ")
    assert tgi_endpoint.requests == []


@pytest.mark.parametrize("source", ["secret.txt", "private"])
def test_a_file_or_folder_it_may_not_read_is_one_line_exit_2(tgi_endpoint, tmp_path, source):
    """Permission denied, named directly: an unreadable file, a folder it may not list. Run without
    root's power to read anything (processes.without_root_reads), so this runs as root too."""
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "notes.txt").write_text("x")
    for path in (tmp_path / "secret.txt", tmp_path / "private"):
        path.chmod(0)
    done = run("--endpoint", tgi_endpoint.url, "-f", source, "what is this?", cwd=tmp_path, unprivileged=True)
    assert done.returncode == 2
    assert one_error_line(done.stderr) == f"falconchat: error: cannot read {source}: permission denied"
    assert tgi_endpoint.requests == []


def test_what_a_folder_holds_but_may_not_be_read_is_skipped_and_named(tgi_endpoint, tmp_path):
    """Inside a named folder, an unreadable file and a subfolder it may not list are skipped, and
    the note on stderr names them; the rest is sent."""
    tgi_endpoint.stream([" Ok."], "eos_token")
    pkg = tmp_path / "src" / "pkg"
    (pkg / "private").mkdir(parents=True)
    (pkg / "private" / "keys.txt").write_text("k")
    (pkg / "app.py").write_text("a = 1\n")
    (pkg / "secret.txt").write_text("s")
    (pkg / "secret.txt").chmod(0)
    (pkg / "private").chmod(0)
    done = run("--endpoint", tgi_endpoint.url, "-f", "src", "ok?", cwd=tmp_path, unprivileged=True)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr.decode() == (
        "falconchat: src: 1 file read; skipped 2 unreadable (pkg/private/, pkg/secret.txt)\n"
    )
    [request] = tgi_endpoint.requests
    assert request.body["inputs"] == (
        "User: ----- BEGIN src/pkg/app.py -----\na = 1\n----- END src/pkg/app.py -----\n\nok?\nAssistant:"
    )


def test_max_file_size_bounds_each_source(tgi_endpoint, tmp_path):
    (tmp_path / "notes.txt").write_text("n" * 3000)
    done = run("--endpoint", tgi_endpoint.url, "--max-file-size", "2K", "-f", "notes.txt", "x", cwd=tmp_path)
    assert done.returncode == 2
    assert one_error_line(done.stderr) == (
        "falconchat: error: cannot read notes.txt: it is 2.93 KB, over --max-file-size 2 KB"
    )
    done = falconchat("ask", "--no-log", "-f", "notes.txt", "x", cwd=tmp_path,
                      env=isolated_env(tmp_path, FALCONCHAT_MAX_FILE_SIZE="lots"))  # fmt: skip
    assert done.returncode == 2
    assert "max-file-size 'lots'" in one_error_line(done.stderr)


def test_ask_json_with_sources_and_a_budget_failure_as_a_record(tgi_endpoint, tmp_path):
    import json

    tgi_endpoint.stream([" Fine."], "eos_token")
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "big.log").write_text("line of a log\n" * 2200)
    done = run("--endpoint", tgi_endpoint.url, "--json", "-f", "a.txt", "ok?", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["reply"] == "Fine."
    assert tgi_endpoint.requests[0].body["inputs"].startswith("User: ----- BEGIN a.txt -----\nalpha\n")
    done = run("--endpoint", tgi_endpoint.url, "--json", "-f", "big.log", "ok?", cwd=tmp_path)
    assert done.returncode == 2
    record = json.loads(done.stdout)
    assert record["error"]["kind"] == "input" and "largest: big.log" in record["error"]["message"]
    assert len(tgi_endpoint.requests) == 1  # the second was never sent

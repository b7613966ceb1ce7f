"""`batch` with sources: each JSON line's `files` (and -f/--sf for every line) reach the model
as named blocks before the line's prompt; a line whose sources cannot be read is a bad line
that names them, and the others run."""

from __future__ import annotations

import json

import pytest

from processes import falconchat, isolated_env

pytestmark = pytest.mark.process


def test_each_lines_files_go_before_its_prompt_and_a_missing_one_is_a_bad_line(tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Ok."], "eos_token")
    (tmp_path / "common.md").write_text("Be brief.\n")
    (tmp_path / "a.py").write_text("a = 1\n")
    lines = [
        {"id": "one", "prompt": "explain a", "files": ["a.py"]},
        {"id": "two", "prompt": "just words"},
        {"id": "three", "prompt": "explain b", "files": ["b.py"]},
        {"id": "four", "prompt": "bad files", "files": "a.py"},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = falconchat("batch", "in.jsonl", "-j", "1", "--endpoint", tgi_endpoint.url, "--sf", "common.md",
                      cwd=tmp_path, env=isolated_env(tmp_path))  # fmt: skip
    assert done.returncode == 1, done.stderr.decode()  # bad lines: not all answered
    stderr = done.stderr.decode()
    assert "line 3: cannot read b.py: no such file or folder" in stderr
    assert "line 4: files must be a list of sources" in stderr
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["id"] for r in records] == ["one", "two"] and all(r["reply"] == "Ok." for r in records)
    system = "System:----- BEGIN common.md -----\nBe brief.\n----- END common.md -----\n"
    assert sorted(r.body["inputs"] for r in tgi_endpoint.requests) == sorted(
        [
            system + "User: ----- BEGIN a.py -----\na = 1\n----- END a.py -----\n\nexplain a\nAssistant:",
            system + "User: just words\nAssistant:",
        ]
    )

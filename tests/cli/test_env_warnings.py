"""The real `falconchat ask` with a `.env` a user mistyped (issue 15, item 16): each unknown
`FALCONCHAT_*` name and each unparsable line is one warning on stderr, and the tutorial's
endpoint name is read in both spellings."""

from __future__ import annotations

import pytest

from processes import falconchat, isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat


def test_a_mistyped_dotenv_warns_once_per_problem_and_still_answers(tmp_path, tgi_endpoint):
    tgi_endpoint.stream([" Blue", " light", " scatters."])
    env_file = tmp_path / ".env"
    env_file.write_text(f"FALCONCHAT_TEMP=0\nHF_API_FALCON_BASE={tgi_endpoint.url}\nnot a line\n")
    result = falconchat("ask", "Why is the sky blue?", cwd=tmp_path, env=isolated_env(tmp_path))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "scatters" in result.stdout.decode()  # HF_API_FALCON_BASE chose the endpoint
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2, err
    assert any("FALCONCHAT_TEMP " in line and "FALCONCHAT_TEMPERATURE" in line for line in lines)
    assert any(str(env_file) in line and "line 3" in line for line in lines)
    assert "Traceback" not in err and "python-dotenv" not in err

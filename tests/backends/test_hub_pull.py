"""`falconchat models pull hf:…`, `-m hf:…` and `--pull`: huggingface_hub's real download code
against the scripted Hub (tests/hub_endpoint.py) serving the bundled GGUF, then the model answering
with the network gone. HF_ENDPOINT and HF_HOME point at the test's own: nothing reaches the real Hub."""

import hashlib

import pytest

from falconchat.backends.gguf import bundled_model_path
from hub_endpoint import COMMIT, Repo, Script, ScriptedHub
from processes import falconchat, isolated_env, one_error_line

pytestmark = pytest.mark.process

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GATED = "test-org/gated-GGUF"
SECRET = "hf_theRightTokenNeverShown123"


@pytest.fixture(scope="module")
def gguf() -> bytes:
    return bundled_model_path().read_bytes()


def repos(gguf: bytes) -> dict[str, Repo]:
    return {
        REPO: Repo(files={"README.md": b"# SmolLM2\n", FILE: gguf}, lfs={FILE}, tags={"v1": COMMIT}),
        GATED: Repo(files={FILE: gguf}, lfs={FILE}, gated_token=SECRET),
        "test-org/no-gguf": Repo(files={"config.json": b"{}", "model.safetensors": b"x"}),
    }


def hub_env(tmp_path, url: str, **extra: str) -> dict[str, str]:
    env = isolated_env(tmp_path, HF_ENDPOINT=url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_ENABLE_HF_TRANSFER"):
        env.pop(name, None)
    env.update(extra)
    return env


def snapshot(tmp_path):
    slug = "models--" + REPO.replace("/", "--")
    return tmp_path / "hf" / "hub" / slug / "snapshots" / COMMIT / FILE


def error_after_choice(stderr: bytes) -> str:
    """What was chosen (the Hub was asked), then the one error line."""
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in stderr.decode(), lines
    assert lines[1].startswith("falconchat: error: ")
    return lines[1]


def error_at_end(stderr: bytes) -> str:
    """Progress lines, then the one error line."""
    text = stderr.decode()
    lines = text.strip().splitlines()
    assert "Traceback" not in text and [line for line in lines if "error" in line] == lines[-1:], lines
    assert lines[-1].startswith("falconchat: error: ")
    return lines[-1]


def ask(tmp_path, env, *flags: str):
    return falconchat("ask", *flags, "--max-new-tokens", "8", "--temperature", "0", "Say hi.", cwd=tmp_path, env=env)


def test_pull_chooses_says_and_verifies_then_answers_with_no_network(tmp_path, gguf, closed_port_url):
    with ScriptedHub(repos(gguf)) as hub:
        env = hub_env(tmp_path, hub.url)
        pulled = falconchat("models", "pull", f"hf:{REPO}", cwd=tmp_path, env=env)
        err = pulled.stderr.decode()
        assert pulled.returncode == 0, err
        assert f"{FILE} (Q4_1, no Q4_K_M: the closest to 4 bits)" in err  # which file, and why
        assert "100% of" in err  # plain progress lines in a pipe
        path = snapshot(tmp_path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(gguf).hexdigest()
        assert not list(path.parents[2].glob("blobs/*.incomplete"))

        before = len(hub.requests)
        answered = ask(tmp_path, env, "-m", f"hf:{REPO}")
        assert answered.returncode == 0, answered.stderr.decode()
        assert answered.stdout.strip()
        assert len(hub.requests) == before  # running a pulled model asks the Hub nothing

        offline = ask(tmp_path, {**env, "HF_HUB_OFFLINE": "1"}, "-m", f"hf:{REPO}:q4_1")
        assert offline.returncode == 0, offline.stderr.decode()
        gone = ask(tmp_path, {**env, "HF_ENDPOINT": closed_port_url}, "--model-path", f"hf:{REPO}/{FILE}@{COMMIT}")
        assert gone.returncode == 0, gone.stderr.decode()
        assert gone.stdout.strip()
        assert len(hub.requests) == before


def test_ask_never_downloads_without_pull(tmp_path, gguf):
    with ScriptedHub(repos(gguf)) as hub:
        env = hub_env(tmp_path, hub.url)
        refused = ask(tmp_path, env, "-m", f"hf:{REPO}")
        assert refused.returncode == 2
        line = one_error_line(refused.stderr)
        assert f"falconchat models pull hf:{REPO}" in line and "--pull" in line
        assert hub.requests == []

        pulled = ask(tmp_path, env, "-m", f"hf:{REPO}", "--pull")
        assert pulled.returncode == 0, pulled.stderr.decode()
        assert pulled.stdout.strip()
        assert snapshot(tmp_path).is_file()


def test_a_connection_cut_half_way_leaves_no_model_and_the_next_pull_resumes(tmp_path, gguf):
    with ScriptedHub(repos(gguf), Script(cut_transfers=1, cut_at=len(gguf) // 2)) as hub:
        env = hub_env(tmp_path, hub.url)
        cut = falconchat("models", "pull", f"hf:{REPO}", cwd=tmp_path, env=env)
        assert cut.returncode == 3
        assert "Traceback" not in cut.stderr.decode()
        assert "pull again to resume" in cut.stderr.decode().splitlines()[-1]
        assert not snapshot(tmp_path).exists()  # nothing half-written where a model is looked for
        partial = list(snapshot(tmp_path).parents[2].glob("blobs/*.incomplete"))
        kept = partial[0].stat().st_size
        assert len(partial) == 1 and 0 < kept < len(gguf)

        hub.requests.clear()
        resumed = falconchat("models", "pull", f"hf:{REPO}", cwd=tmp_path, env=env)
        assert resumed.returncode == 0, resumed.stderr.decode()
        ranges = [h.get("Range") for method, path, h in hub.requests if path.startswith("/cdn/")]
        assert ranges == [f"bytes={kept}-"]  # the second pull asked only for the rest
        assert hashlib.sha256(snapshot(tmp_path).read_bytes()).digest() == hashlib.sha256(gguf).digest()


def test_500s_are_retried_then_succeed_or_end_in_one_line(tmp_path, gguf):
    with ScriptedHub(repos(gguf), Script(api_failures=2)) as hub:
        env = hub_env(tmp_path, hub.url)
        ok = falconchat("models", "pull", f"hf:{REPO}", cwd=tmp_path, env=env)
        assert ok.returncode == 0, ok.stderr.decode()
    with ScriptedHub(repos(gguf), Script(api_failures=99)) as hub:
        env = hub_env(tmp_path, hub.url)
        failed = falconchat("models", "pull", f"hf:{REPO}:Q8_0", cwd=tmp_path, env=env)
        assert failed.returncode == 1
        assert "the Hub answered 500" in one_error_line(failed.stderr)
    with ScriptedHub(repos(gguf), Script(api_failures=99, api_status=429)) as hub:
        env = hub_env(tmp_path, hub.url)
        limited = falconchat("models", "pull", f"hf:{REPO}", cwd=tmp_path, env=env)
        assert limited.returncode == 6
        assert "rate-limiting requests (429) after 3 tries" in one_error_line(limited.stderr)
        assert len(hub.requests) == 3


def test_gated_missing_and_wrong_names_are_one_line_each(tmp_path, gguf):
    with ScriptedHub(repos(gguf)) as hub:
        env = hub_env(tmp_path, hub.url, HF_TOKEN="hf_wrongTokenAlsoNeverShown")
        gated = falconchat("models", "pull", f"hf:{GATED}", cwd=tmp_path, env=env)
        assert gated.returncode == 4
        line = error_after_choice(gated.stderr)
        assert f"https://huggingface.co/{GATED}" in line and "HF_TOKEN" in line
        assert "hf_wrong" not in gated.stderr.decode() + gated.stdout.decode()

        allowed = falconchat("models", "pull", f"hf:{GATED}", cwd=tmp_path, env={**env, "HF_TOKEN": SECRET})
        assert allowed.returncode == 0, allowed.stderr.decode()
        assert SECRET not in allowed.stderr.decode() + allowed.stdout.decode()
        project = tmp_path / "project"  # HF_API_KEY in a .env file, the classic tutorial's name
        project.mkdir()
        (project / ".env").write_text(f"HF_API_KEY={SECRET}\n")
        no_token = {k: v for k, v in env.items() if k != "HF_TOKEN"} | {"HF_HOME": str(tmp_path / "hf2")}
        from_dotenv = falconchat("models", "pull", f"hf:{GATED}", cwd=project, env=no_token)
        assert from_dotenv.returncode == 0, from_dotenv.stderr.decode()
        assert SECRET not in from_dotenv.stderr.decode() + from_dotenv.stdout.decode()
        cdn = [h for method, path, h in hub.requests if path.startswith("/cdn/")]
        assert cdn and all("Authorization" not in h for h in cdn)  # the token stays with the Hub, not its CDN

        cases = {
            "hf:test-org/nothing-here": (2, "no repository test-org/nothing-here"),
            "hf:test-org/no-gguf": (2, "holds no GGUF file (it has: config.json, model.safetensors)"),
            f"hf:{REPO}:q2_k": (2, "no Q2_K file; its quants: Q4_1"),
            f"hf:{REPO}@v9": (2, "has no revision 'v9'"),
            "hf:a/b/c/d": (2, "malformed Hub model name"),
            "smollm2": (2, "models pull takes a Hub name"),
        }
        for name, (code, message) in cases.items():
            result = falconchat("models", "pull", name, cwd=tmp_path, env=env)
            assert result.returncode == code, (name, result.stderr.decode())
            assert message in one_error_line(result.stderr), name


def test_models_lists_shows_and_removes_a_pulled_model(tmp_path, gguf):
    with ScriptedHub(repos(gguf)) as hub:
        env = hub_env(tmp_path, hub.url)
        assert falconchat("models", "pull", f"hf:{REPO}", cwd=tmp_path, env=env).returncode == 0
        hub.requests.clear()

        listed = falconchat("models", cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr.decode()
        row = next(line for line in listed.stdout.decode().splitlines() if line.startswith(f"hf:{REPO}/"))
        assert row.split() == [f"hf:{REPO}/{FILE}", "llama", "Q4_1", f"{len(gguf) / 1e6:,.0f}", "MB", "8192", "yes"]

        info = falconchat("models", "info", f"hf:{REPO}:Q4_1", cwd=tmp_path, env=env)
        shown = info.stdout.decode()
        assert info.returncode == 0, info.stderr.decode()
        assert "architecture:  llama" in shown and "context:       8192" in shown and "<|im_start|>" in shown

        kept = falconchat("models", "rm", f"hf:{REPO}", cwd=tmp_path, env=env)  # a pipe: no question, no -y
        assert kept.returncode == 2 and "-y" in one_error_line(kept.stderr)
        assert snapshot(tmp_path).is_file()

        removed = falconchat("models", "rm", "-y", f"hf:{REPO}", cwd=tmp_path, env=env)
        assert removed.returncode == 0, removed.stderr.decode()
        assert f"freed {len(gguf) / 1e6:,.0f} MB" in removed.stderr.decode()
        assert not snapshot(tmp_path).parents[2].exists()  # the repository's folder, blobs and all
        assert hub.requests == []  # listing, info and rm never ask the Hub

        gone = ask(tmp_path, env, "-m", f"hf:{REPO}")
        assert gone.returncode == 2 and "models pull" in one_error_line(gone.stderr)


def test_bytes_that_do_not_match_the_hub_s_sha256_or_are_not_gguf_are_removed(tmp_path, gguf):
    with ScriptedHub(repos(gguf), Script(corrupt=True)) as hub:
        env = hub_env(tmp_path, hub.url)
        bad = falconchat("models", "pull", f"hf:{REPO}", cwd=tmp_path, env=env)
        assert bad.returncode == 1
        assert "did not match the sha256 the Hub gave" in error_at_end(bad.stderr)
        blobs = snapshot(tmp_path).parents[2] / "blobs"
        assert not snapshot(tmp_path).exists() and not [p for p in blobs.iterdir() if p.is_file()]
    not_gguf = {REPO: Repo(files={"fake.Q4_K_M.gguf": b"<html>not a model</html>" * 100}, lfs={"fake.Q4_K_M.gguf"})}
    with ScriptedHub(not_gguf) as hub:
        env = hub_env(tmp_path, hub.url)
        html = falconchat("models", "pull", f"hf:{REPO}", cwd=tmp_path, env=env)
        assert html.returncode == 2
        assert f"{REPO}/fake.Q4_K_M.gguf is not a GGUF file; removed it" in error_at_end(html.stderr)
        assert not (snapshot(tmp_path).parent / "fake.Q4_K_M.gguf").exists()


def test_a_split_gguf_is_pulled_part_by_part_and_listed_as_one_model(tmp_path, gguf):
    # Two parts cut from the bundled file: enough to see every part fetched, checked and listed
    # once (llama.cpp joins real split files when it loads the first part).
    half = len(gguf) // 2
    parts = {"Q8_0/big-Q8_0-00001-of-00002.gguf": gguf[:half], "Q8_0/big-Q8_0-00002-of-00002.gguf": gguf[half:]}
    split = {"test-org/split-GGUF": Repo(files={**parts, "big-Q2_K.gguf": gguf}, lfs={*parts, "big-Q2_K.gguf"})}
    with ScriptedHub(split) as hub:
        env = hub_env(tmp_path, hub.url)
        pulled = falconchat("models", "pull", "hf:test-org/split-GGUF:q8_0", cwd=tmp_path, env=env)
        assert pulled.returncode == 0, pulled.stderr.decode()
        fetched = [path for method, path, _ in hub.requests if method == "HEAD"]
        assert [p.rsplit("/", 1)[-1] for p in fetched] == [
            "big-Q8_0-00001-of-00002.gguf",
            "big-Q8_0-00002-of-00002.gguf",
        ]
        listed = falconchat("models", cwd=tmp_path, env=env).stdout.decode()
        rows = [line.split() for line in listed.splitlines() if line.startswith("hf:test-org/split-GGUF")]
        assert rows == [
            [
                "hf:test-org/split-GGUF/Q8_0/big-Q8_0-00001-of-00002.gguf",
                "llama",
                "Q8_0",
                f"{len(gguf) / 1e6:,.0f}",
                "MB",
                "8192",
                "yes",
            ]
        ]

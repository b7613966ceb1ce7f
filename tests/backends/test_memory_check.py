"""A local GGUF larger than the free memory is refused before it loads (issue 25 item 7)."""

import pytest

from falconchat.backends.gguf import bundled_model_path, check_fits_memory, memory_available, model_bytes
from falconchat.cli.app import run
from falconchat.errors import ConfigError
from in_process import environment


def meminfo(tmp_path, available_kb: int):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       16000000 kB\nMemFree:          100000 kB\nMemAvailable:   {available_kb} kB\n")
    return path


def test_free_memory_is_read_from_meminfo(tmp_path):
    assert memory_available(meminfo(tmp_path, 2_000_000)) == 2_000_000 * 1024
    assert memory_available(tmp_path / "missing") is None


def test_a_model_larger_than_the_free_memory_is_one_line(tmp_path):
    model = bundled_model_path()
    check_fits_memory(model, memory_available(meminfo(tmp_path, 1_000_000)))  # 1 GB free: fits
    check_fits_memory(model, None)  # unknown: not refused
    with pytest.raises(ConfigError, match=r"needs about 0\.1 GB of memory and 0\.1 GB is free: .*--force"):
        check_fits_memory(model, memory_available(meminfo(tmp_path, 50_000)))


def test_split_parts_count_together(tmp_path):
    for i in (1, 2, 3):
        (tmp_path / f"m-Q8_0-0000{i}-of-00003.gguf").write_bytes(b"x" * 1000)
    assert model_bytes(tmp_path / "m-Q8_0-00001-of-00003.gguf") == 3000


def test_ask_refuses_before_loading_and_force_loads(tmp_path, monkeypatch):
    import falconchat.backends.gguf as gguf

    monkeypatch.setattr(gguf, "MEMINFO", meminfo(tmp_path, 50_000))
    monkeypatch.setattr(gguf.memory_available, "__defaults__", (gguf.MEMINFO,))
    path = str(bundled_model_path())
    env = environment(tmp_path)
    assert run(["ask", "--model-path", path, "--max-new-tokens", "2", "hi"], env) == 2
    assert "--force to load it anyway" in env.stderr.text()
    forced = environment(tmp_path)
    assert run(["ask", "--model-path", path, "--force", "--max-new-tokens", "2", "hi"], forced) == 0, (
        forced.stderr.text()
    )

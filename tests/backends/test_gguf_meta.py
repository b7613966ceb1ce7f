"""A GGUF's header read without loading it: what `models` and `models info` show."""

import pytest

from falconchat.backends.gguf import bundled_model_path
from falconchat.backends.gguf_meta import read_metadata, summary
from falconchat.errors import ConfigError


def test_the_bundled_model_says_what_it_is():
    facts = summary(read_metadata(bundled_model_path()))
    assert facts["architecture"] == "llama"
    assert facts["context"] == 8192
    assert facts["parameters"] == "135M"
    assert "<|im_start|>" in facts["template"]


def test_a_cut_or_foreign_file_is_one_config_error(tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(bundled_model_path().read_bytes()[:5000])
    with pytest.raises(ConfigError, match=r"cannot read the GGUF header of cut\.gguf"):
        read_metadata(cut)
    other = tmp_path / "model.safetensors"
    other.write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="not a GGUF model file"):
        read_metadata(other)

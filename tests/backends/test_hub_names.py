"""Hub model names and the choice of a repository's GGUF, as `llama-cli -hf` chooses (no network)."""

import pytest

from falconchat.backends.hub_names import HubName, choose, models_in, parse_hub_name, quant_of, split_parts
from falconchat.errors import ConfigError

BARTOWSKI = [
    "README.md",
    "Llama-3.2-1B-Instruct-Q8_0.gguf",
    "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
    "Llama-3.2-1B-Instruct-Q4_K_S.gguf",
    "Llama-3.2-1B-Instruct-IQ4_XS.gguf",
    "Llama-3.2-1B-Instruct-f16.gguf",
    "mmproj-model-f16.gguf",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hf:bartowski/Llama-3.2-1B-Instruct-GGUF", HubName("bartowski/Llama-3.2-1B-Instruct-GGUF")),
        ("hf:o/r:q8_0", HubName("o/r", quant="q8_0")),
        ("hf:o/r/model.Q4_1.gguf", HubName("o/r", file="model.Q4_1.gguf")),
        ("hf:o/r@v1.0", HubName("o/r", revision="v1.0")),
        ("hf:o/r:Q4_K_M@refs/pr/1", HubName("o/r", quant="Q4_K_M", revision="refs/pr/1")),
        ("HF:o/r", HubName("o/r")),
    ],
)
def test_names_parse(text, expected):
    assert parse_hub_name(text) == expected


@pytest.mark.parametrize(
    "text", ["hf:", "hf:a", "hf:a/b/c/d", "hf:a/b/c", "hf:a/b:", "hf:a/b@", "hf:/b", "hf:a/b:q4/x"]
)
def test_malformed_names_are_config_errors(text):
    with pytest.raises(ConfigError, match="malformed Hub model name"):
        parse_hub_name(text)


def test_a_name_prints_as_typed_again():
    for text in ("hf:o/r", "hf:o/r:Q8_0", "hf:o/r/f.gguf@main"):
        assert str(parse_hub_name(text)) == text


def test_quants_are_read_from_file_names():
    assert quant_of("Llama-3.2-1B-Instruct-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_of("SmolLM2-135M-Instruct.Q4_1.gguf") == "Q4_1"
    assert quant_of("x-iq4_xs.gguf") == "IQ4_XS"
    assert quant_of("x-f16.gguf") == "F16"
    assert quant_of("sub/x-Q8_0-00001-of-00002.gguf") == "Q8_0"
    assert quant_of("model.gguf") is None


def test_the_default_is_q4_k_m_and_projectors_are_left_out():
    assert "mmproj-model-f16.gguf" not in models_in(BARTOWSKI)
    file, why = choose(HubName("o/r"), BARTOWSKI)
    assert file == "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    assert "Q4_K_M" in why


def test_without_q4_k_m_the_closest_4_bit_file_is_chosen_and_said():
    files = [f for f in BARTOWSKI if "Q4_K_M" not in f]
    assert choose(HubName("o/r"), files)[0] == "Llama-3.2-1B-Instruct-Q4_K_S.gguf"
    assert choose(HubName("o/r"), ["a-Q8_0.gguf", "a-Q5_K_M.gguf", "a-Q3_K_M.gguf"])[0] == "a-Q5_K_M.gguf"
    file, why = choose(HubName("o/r"), ["m.Q8_0.gguf", "m.Q4_1.gguf", "m.F16.gguf"])
    assert file == "m.Q4_1.gguf" and "closest" in why


def test_an_explicit_quant_is_case_insensitive_and_a_missing_one_lists_the_choices():
    assert choose(HubName("o/r", quant="q8_0"), BARTOWSKI)[0] == "Llama-3.2-1B-Instruct-Q8_0.gguf"
    with pytest.raises(ConfigError, match="no Q2_K file; its quants: F16, IQ4_XS, Q4_K_M, Q4_K_S, Q8_0"):
        choose(HubName("o/r", quant="q2_k"), BARTOWSKI)


def test_an_ambiguous_quant_lists_the_files():
    with pytest.raises(ConfigError, match=r"several Q4_K_M files .*a-Q4_K_M\.gguf.*b-Q4_K_M\.gguf"):
        choose(HubName("o/r", quant="Q4_K_M"), ["a-Q4_K_M.gguf", "b-Q4_K_M.gguf"])


def test_a_repository_without_gguf_lists_what_it_has():
    with pytest.raises(ConfigError, match=r"holds no GGUF file \(it has: config.json, model.safetensors\)"):
        choose(HubName("o/r"), ["model.safetensors", "config.json"])


def test_an_exact_file_must_exist():
    assert choose(HubName("o/r", file="mmproj-model-f16.gguf"), BARTOWSKI)[0] == "mmproj-model-f16.gguf"
    with pytest.raises(ConfigError, match=r"has no file .x\.gguf."):
        choose(HubName("o/r", file="x.gguf"), BARTOWSKI)


def test_split_ggufs_are_one_model_of_all_their_parts():
    files = [f"Q8_0/big-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)] + ["big-Q4_K_M.gguf"]
    assert models_in(files) == ["Q8_0/big-Q8_0-00001-of-00003.gguf", "big-Q4_K_M.gguf"]
    chosen, _ = choose(HubName("o/r", quant="q8_0"), files)
    assert split_parts(chosen, files) == files[:3]

"""`models pull` checks the free disk space before it starts (no network: the plan is given)."""

import pytest

from falconchat.backends.hub import HubFile, Plan, check_free_space
from falconchat.backends.hub_names import HubName
from falconchat.errors import ConfigError


def test_a_model_larger_than_the_free_disk_is_refused_before_downloading(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "not-yet" / "hub"))
    huge = Plan(HubName("o/r"), (HubFile("big-Q4_K_M.gguf", 10**16, "a" * 64),), "Q4_K_M, the default")
    with pytest.raises(ConfigError, match=r"big-Q4_K_M\.gguf needs 10,000,000,000 MB and .*not-yet/hub has .* MB free"):
        check_free_space(huge)
    small = Plan(HubName("o/r"), (HubFile("small.gguf", 1000, None),), "")
    check_free_space(small)
    assert not (tmp_path / "not-yet").exists()  # checking creates nothing

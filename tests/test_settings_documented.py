"""Every setting is documented, and the settings loader reads what the page says."""

from __future__ import annotations

from pathlib import Path

import pytest

from openfgs.errors import ConfigError
from openfgs.settings import load_settings, setting_names

DOC = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()


@pytest.mark.parametrize("name", setting_names())
def test_setting_is_documented(name: str) -> None:
    assert f"`{name}`" in DOC


def test_environment_and_flags() -> None:
    env = {"OPENFGS_PORT": "9001", "OPENFGS_WORKER": "false", "OPENFGS_POLL_INTERVAL": "0.5"}
    settings = load_settings(env, host="0.0.0.0")
    assert (settings.port, settings.worker, settings.poll_interval) == (9001, False, 0.5)
    assert settings.host == "0.0.0.0"
    assert load_settings(env, port=9002).port == 9002


def test_bad_value_stops_with_the_variable_named() -> None:
    with pytest.raises(ConfigError, match="OPENFGS_PORT"):
        load_settings({"OPENFGS_PORT": "eighty"})


def test_secret_key_is_not_in_repr() -> None:
    settings = load_settings({"OPENFGS_SECRET_KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(settings)

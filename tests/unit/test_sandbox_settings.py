"""Sandbox settings a person can get wrong are refused with their name, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from openfgs.errors import ConfigError
from openfgs.services import Services
from openfgs.settings import load_settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENFGS_FUNCTION_IDS", "²-5"),
        ("OPENFGS_FUNCTION_IDS", "5-3"),
        ("OPENFGS_FUNCTION_IDS", "100-200"),
        ("OPENFGS_INSTANCE_USER", "²:1"),
        ("OPENFGS_ISOLATION", "bogus"),
        ("OPENFGS_SANDBOX_NETWORK", "everywhere"),
    ],
)
def test_bad_sandbox_settings_are_config_errors(tmp_path: Path, name: str, value: str) -> None:
    settings = load_settings({name: value, "OPENFGS_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match=name.removeprefix("OPENFGS_").lower() + "|" + name):
        Services.build(settings)

"""Every setting is documented and is a flag, and the settings loader reads what the page says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openfgs.cli import build_parser
from openfgs.cli.options import settings_from
from openfgs.errors import ConfigError
from openfgs.settings import SettingSpec, load_settings, setting_names, setting_specs

DOC = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()


@pytest.mark.parametrize("name", setting_names())
def test_setting_is_documented(name: str) -> None:
    assert f"`{name}`" in DOC


def test_the_page_gives_the_flag_rule() -> None:
    assert "has a flag\n`--name-with-dashes` on `serve`, `worker` and `db migrate`" in DOC


def value_other_than_default(spec: SettingSpec) -> tuple[list[str], Any]:
    """The words that give ``spec`` a value other than its default, and that value."""
    if spec.kind == "bool":
        return [("--no-" if spec.default else "--") + spec.flag[2:]], not spec.default
    if spec.kind in ("int", "float"):
        return [spec.flag, str(spec.default + 3)], spec.default + 3
    if spec.kind == "Path":
        return [spec.flag, "/srv/elsewhere"], Path("/srv/elsewhere")
    return [spec.flag, "given-by-flag"], "given-by-flag"


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["db", "migrate"]])
@pytest.mark.parametrize("spec", setting_specs(), ids=lambda spec: spec.name)
def test_setting_is_a_flag_of_the_server_commands(
    command: list[str], spec: SettingSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(spec.env, raising=False)
    words, value = value_other_than_default(spec)
    assert value != spec.default
    settings = settings_from(build_parser().parse_args([*command, *words]))
    assert getattr(settings, spec.name) == value


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

"""The credential profile: written 0600, refused when others can read it, beaten by flags."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from openfgs.cli import main
from openfgs.errors import ConfigError
from openfgs.models import Credential
from openfgs.profile import read_profile, with_profile, write_profile
from openfgs.settings import load_settings
from tests.support import CREDENTIAL, OTHER

ENDPOINT = "http://127.0.0.1:8123"


@pytest.fixture(autouse=True)
def no_openfgs_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENFGS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes nothing away: the profile's mode must not depend on it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_owner_only_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "data" / "credentials"
    write_profile(path, CREDENTIAL, ENDPOINT)
    assert mode(path) == 0o600
    assert read_profile(path) == {
        "project_id": CREDENTIAL.project_id,
        "access_key": CREDENTIAL.access_key,
        "secret_key": CREDENTIAL.secret_key,
        "endpoint": ENDPOINT,
    }
    assert os.listdir(path.parent) == ["credentials"]  # no temporary file left beside it


def test_an_older_profile_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text("OPENFGS_SECRET_KEY=old\nOPENFGS_REGION=ignored\n")
    path.chmod(0o644)
    write_profile(path, OTHER, ENDPOINT)
    assert mode(path) == 0o600
    assert read_profile(path)["secret_key"] == OTHER.secret_key


@pytest.mark.parametrize("open_mode", [0o640, 0o604, 0o620])
def test_a_profile_others_can_open_is_refused(tmp_path: Path, open_mode: int) -> None:
    path = tmp_path / "credentials"
    write_profile(path, CREDENTIAL, ENDPOINT)
    path.chmod(open_mode)
    with pytest.raises(ConfigError, match=f"open to other users \\(mode 0{open_mode:o}\\)"):
        read_profile(path)


def test_no_profile_gives_nothing(tmp_path: Path) -> None:
    assert read_profile(tmp_path / "credentials") == {}


def settings_with_profile(data_dir: Path, env: dict[str, str], **flags: str) -> Credential:
    settings = with_profile(load_settings({"OPENFGS_DATA_DIR": str(data_dir), **env}, **flags))
    return Credential(settings.project_id, settings.access_key, settings.secret_key)


def test_variables_and_flags_beat_the_profile(tmp_path: Path) -> None:
    write_profile(tmp_path / "credentials", CREDENTIAL, ENDPOINT)
    assert settings_with_profile(tmp_path, {}) == CREDENTIAL
    given = {
        "OPENFGS_PROJECT_ID": OTHER.project_id,
        "OPENFGS_ACCESS_KEY": OTHER.access_key,
        "OPENFGS_SECRET_KEY": OTHER.secret_key,
    }
    assert settings_with_profile(tmp_path, given) == OTHER
    flags = {"project_id": OTHER.project_id, "access_key": OTHER.access_key}
    flags["secret_key"] = OTHER.secret_key
    assert settings_with_profile(tmp_path, {}, **flags) == OTHER


def test_the_profile_endpoint_only_when_none_is_given(tmp_path: Path) -> None:
    write_profile(tmp_path / "credentials", CREDENTIAL, ENDPOINT)
    env = {"OPENFGS_DATA_DIR": str(tmp_path)}
    assert with_profile(load_settings(env)).api_endpoint == ENDPOINT
    env["OPENFGS_ENDPOINT"] = "http://elsewhere:1"
    assert with_profile(load_settings(env)).api_endpoint == "http://elsewhere:1"
    flagged = with_profile(load_settings(env, endpoint="http://flag:2"))
    assert flagged.api_endpoint == "http://flag:2"


def test_a_refused_profile_ends_a_client_command_with_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "credentials"
    write_profile(path, CREDENTIAL, "http://127.0.0.1:9")
    path.chmod(0o644)
    assert main(["fn", "list", "--data-dir", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err == (
        f"openfgs: {path} is open to other users (mode 0644), so it is not used; "
        f"run chmod 600 {path} if the credential in it is still secret\n"
    )
    assert out == ""


def test_no_credential_anywhere_ends_a_client_command_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fn", "list", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openfgs: no credential: set OPENFGS_PROJECT_ID"), err
    assert str(tmp_path / "credentials") in err

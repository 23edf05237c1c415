"""How many invocations a worker runs at once: the store's default, or what the operator says."""

from __future__ import annotations

import pytest

from openfgs.cli import main
from openfgs.errors import ConfigError
from openfgs.settings import load_settings

PG = "postgresql://postgres@127.0.0.1:5432/test"


def test_by_default_the_store_decides() -> None:
    assert load_settings({}).worker_slots == 16
    assert load_settings({"OPENFGS_DATABASE_URL": PG}).worker_slots == 64


def test_a_number_given_is_the_number_on_either_store() -> None:
    for env in ({}, {"OPENFGS_DATABASE_URL": PG}):
        assert load_settings({**env, "OPENFGS_WORKER_CONCURRENCY": "7"}).worker_slots == 7
        assert load_settings(env, worker_concurrency=48).worker_slots == 48


def test_a_negative_number_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="OPENFGS_WORKER_CONCURRENCY: -1"):
        load_settings({"OPENFGS_WORKER_CONCURRENCY": "-1"})
    with pytest.raises(ConfigError, match="OPENFGS_WORKER_CONCURRENCY: -3"):
        load_settings({}, worker_concurrency=-3)


def test_the_command_says_so_and_exits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENFGS_WORKER_CONCURRENCY", raising=False)
    code = main(["worker", "--worker-concurrency", "-2", "--database-url", PG])
    assert code != 0
    assert "OPENFGS_WORKER_CONCURRENCY: -2 is not 0" in capsys.readouterr().err

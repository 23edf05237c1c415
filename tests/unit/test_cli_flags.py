"""Flags win over variables, and the help says what each flag stands for, as prose."""

from __future__ import annotations

import argparse
import os

import pytest

from openfgs.cli import build_parser, main
from openfgs.cli.options import settings_from
from openfgs.settings import setting_specs


@pytest.fixture(autouse=True)
def no_openfgs_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENFGS_"):
            monkeypatch.delenv(name)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_a_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFGS_WORKER_CONCURRENCY", "5")
    monkeypatch.setenv("OPENFGS_WORKER", "false")
    monkeypatch.setenv("OPENFGS_POLL_INTERVAL", "0.25")
    settings = settings_from(parse("worker", "--worker-concurrency", "7", "--worker"))
    assert (settings.worker_concurrency, settings.worker) == (7, True)
    assert settings.poll_interval == 0.25  # no flag: the variable


def test_a_bad_flag_value_is_a_usage_error_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--max-connections", "many"])
    assert stopped.value.code == 2
    assert "--max-connections: invalid int value: 'many'" in capsys.readouterr().err


def help_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--help"])
    assert stopped.value.code == 0
    return capsys.readouterr().out


def test_serve_help_names_each_variable_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(help_text(capsys, "serve").split())  # argparse wraps lines anywhere
    for spec in setting_specs():
        assert spec.flag in text
        assert spec.env in text
    assert (
        "--worker-concurrency N OPENFGS_WORKER_CONCURRENCY, default 0 (16; 32 with --database-url)"
        in text
    )
    assert "--worker, --no-worker OPENFGS_WORKER, default true" in text
    assert "--data-dir DIR OPENFGS_DATA_DIR, default ./.openfgs" in text


def all_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += all_commands(sub, (*prefix, name))
    return found


def test_help_reads_as_prose_in_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    commands = all_commands(build_parser())
    assert ("fn", "invoke") in commands and ("credentials", "create") in commands
    for command in commands:
        text = help_text(capsys, *command)
        assert "``" not in text, command
        assert ":func:" not in text and ":class:" not in text, command


def test_client_commands_take_the_client_settings_only(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys, "fn", "invoke")
    for flag in ("--endpoint", "--project-id", "--access-key", "--secret-key", "--data-dir"):
        assert flag in text
    assert "--worker-concurrency" not in text
    assert "profile" in text

"""Options several commands share, declared once: every setting as a flag, and the errors.

The setting flags are generated from the fields of :class:`~openfgs.settings.Settings`, so a
new setting is a new flag with no change here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from openfgs.errors import OpenFgsError
from openfgs.settings import Settings, SettingSpec, load_settings, setting_specs

# The settings a client command needs: where the server is, the credential, the URN's region,
# and the data dir whose credential profile is read when no credential is given.
CLIENT_SETTINGS = ("endpoint", "project_id", "access_key", "secret_key", "region", "data_dir")
METAVARS = {"int": "N", "float": "NUMBER", "Path": "DIR", "str": "TEXT"}


class UsageError(OpenFgsError):
    """A command was given something it cannot use; printed like a configuration error."""


def settings_flags(
    only: Collection[str] | None = None, exclude: Collection[str] = (), note: str = ""
) -> argparse.ArgumentParser:
    """A parent parser with a flag for each setting (or for those in ``only``)."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group(
        "settings",
        "Each flag stands for an OPENFGS_ variable and wins over it; docs/settings.md says "
        f"what each setting means.{note}",
    )
    for spec in setting_specs():
        if (only is not None and spec.name not in only) or spec.name in exclude:
            continue
        help_text = f"{spec.env}, default {shown_default(spec)}".replace("%", "%%")
        if spec.kind == "bool":
            group.add_argument(
                spec.flag, dest=spec.name, action=argparse.BooleanOptionalAction, help=help_text
            )
            continue
        metavar = METAVARS.get(spec.kind, "TEXT")
        group.add_argument(
            spec.flag, dest=spec.name, type=_parser(spec), metavar=metavar, help=help_text
        )
    return parser


def _parser(spec: SettingSpec) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        return spec.parse(raw)

    parse.__name__ = spec.kind  # argparse names it in "invalid int value: 'x'"
    return parse


def shown_default(spec: SettingSpec) -> str:
    if spec.kind == "bool":
        return str(spec.default).lower()
    if spec.name == "endpoint":
        return "http://HOST:PORT"
    if spec.name == "worker_concurrency":
        return "0 (16; 32 with --database-url)"
    if isinstance(spec.default, Path):
        return f"./{spec.default}"
    return str(spec.default) if spec.default != "" else "empty"


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings of a command: its flags over the ``OPENFGS_*`` variables."""
    return load_settings(**{spec.name: getattr(args, spec.name, None) for spec in setting_specs()})

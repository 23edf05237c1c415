"""The openfgs command: run the service, manage credentials, and use the API as a client.

A thin shell: each command turns its flags into settings and calls the library. Errors the
library raises on purpose end the command with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openfgs.cli import client, server
from openfgs.cli.options import UsageError
from openfgs.client import ClientError
from openfgs.errors import ConfigError, OpenFgsError

__all__ = ["build_parser", "main"]

USAGE_STATUS = 2  # what argparse exits with on a bad flag: a bad setting is the same mistake


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openfgs",
        description="Run the openfgs service, manage its credentials, and use its API.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    server.add_commands(sub)
    client.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigError, UsageError) as exc:
        print(f"openfgs: {exc}", file=sys.stderr)
        return USAGE_STATUS
    except (ClientError, OpenFgsError) as exc:
        print(f"openfgs: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close_clients()
    return code

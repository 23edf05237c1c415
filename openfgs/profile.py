"""The credential profile: the credential a data dir's first start made, kept for the CLI.

The first ``openfgs serve`` of a new store writes ``<data dir>/credentials``, readable by its
owner only, so the client commands run on the same machine need no ``export``. It sits beside
the database that holds the credential: several data dirs keep several profiles, and removing
a data dir removes its profile with it. The lines are ``OPENFGS_<NAME>=value``, the form of the
variables they stand for (a shell can ``set -a; . .openfgs/credentials``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from openfgs.errors import ConfigError
from openfgs.models import Credential
from openfgs.settings import Settings

PROFILE_NAME = "credentials"
# The settings a profile may give; they are used only when no flag or variable names any of
# the credential's three.
PROFILE_SETTINGS = ("project_id", "access_key", "secret_key", "endpoint")
CREDENTIAL_SETTINGS = PROFILE_SETTINGS[:3]


def profile_path(settings: Settings) -> Path:
    return settings.data_dir / PROFILE_NAME


def write_profile(path: Path, credential: Credential, endpoint: str) -> None:
    """Write the profile with mode 0600 from its first byte, replacing any older one whole."""
    lines = [
        "# The credential the first start of this data dir created; openfgs client commands",
        "# read it when no flag or OPENFGS_* variable names a credential.",
        f"OPENFGS_PROJECT_ID={credential.project_id}",
        f"OPENFGS_ACCESS_KEY={credential.access_key}",
        f"OPENFGS_SECRET_KEY={credential.secret_key}",
        f"OPENFGS_ENDPOINT={endpoint}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 (O_EXCL): no moment where another user could read it.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{PROFILE_NAME}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write("\n".join(lines) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_profile(path: Path) -> dict[str, str]:
    """The settings a profile gives, by setting name; empty when there is no profile.

    A profile other users can read or write is refused, as ssh refuses such a key.
    """
    try:
        with path.open() as source:
            mode = stat.S_IMODE(os.fstat(source.fileno()).st_mode)
            if mode & 0o077:
                raise ConfigError(
                    f"{path} is open to other users (mode {mode:04o}), so it is not used; "
                    f"run chmod 600 {path} if the credential in it is still secret"
                )
            text = source.read()
    except FileNotFoundError:
        return {}
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        name = key.removeprefix("OPENFGS_").lower()
        if sep and key.startswith("OPENFGS_") and name in PROFILE_SETTINGS:
            values[name] = value.strip()
    return values


def with_profile(settings: Settings) -> Settings:
    """``settings`` completed from the profile when no flag or variable names a credential.

    Flags beat variables beat the profile: a profile's endpoint is used only when none is set.
    """
    if any(getattr(settings, name) for name in CREDENTIAL_SETTINGS):
        return settings
    values = read_profile(profile_path(settings))
    if settings.endpoint:
        values.pop("endpoint", None)
    return settings.with_overrides(**values)

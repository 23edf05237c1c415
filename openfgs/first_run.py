"""What the first start of a new store does: a credential for the user and the demo function."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from importlib import resources

from openfgs.auth.service import new_credential
from openfgs.errors import Conflict
from openfgs.models import Credential
from openfgs.profile import profile_path, write_profile
from openfgs.schemas import CreateFunctionBody, FuncCode
from openfgs.services import Services

log = logging.getLogger("openfgs")
DEMO_FUNCTION = "hello"


async def first_run(services: Services, say: Callable[[str], None]) -> None:
    """On a new store: make a credential (shown once, kept in the profile) and deploy the demo.

    ``say`` shows the user a line; the credential's secret goes through it only this once.
    """
    if not services.first_start:
        return
    s = services.settings
    if s.access_key and s.secret_key and s.project_id:
        credential = Credential(s.project_id, s.access_key, s.secret_key)
    else:
        credential = new_credential()
        await services.auth.ensure_credential(credential)
        announce_credential(services, credential, say)
    try:
        function = await services.registry.create(credential.project_id, demo_function())
    except Conflict:  # another node starting on the same new database deployed it first
        return
    say(f"openfgs: deployed the demo function {function.urn(s.region).qualified()}")


def announce_credential(
    services: Services, credential: Credential, say: Callable[[str], None]
) -> None:
    """Show a new credential once and keep it in the profile for the client commands."""
    endpoint = services.settings.api_endpoint
    say(
        "openfgs: created a credential; the secret key is shown only this once:\n"
        f"  export OPENFGS_PROJECT_ID={credential.project_id}\n"
        f"  export OPENFGS_ACCESS_KEY={credential.access_key}\n"
        f"  export OPENFGS_SECRET_KEY={credential.secret_key}\n"
        f"  export OPENFGS_ENDPOINT={endpoint}"
    )
    path = profile_path(services.settings)
    try:
        write_profile(path, credential, endpoint)
    except OSError as exc:  # the service runs without it: the lines above are the credential
        log.warning("could not save the credential profile %s: %s", path, exc)
        return
    say(
        f"openfgs: also saved in {path} (mode 0600): client commands given the same data dir "
        "read it, so on this machine the export lines are optional"
    )


def demo_function() -> CreateFunctionBody:
    """The demo function ``hello``, from the source shipped in ``openfgs.demo``."""
    source = resources.files("openfgs.demo").joinpath("index.py").read_bytes()
    return CreateFunctionBody(
        func_name=DEMO_FUNCTION,
        package="default",
        runtime="Python3.9",
        timeout=30,
        handler="index.handler",
        memory_size=128,
        code_type="inline",
        func_code=FuncCode(file=base64.b64encode(source).decode()),
        description="openfgs demo function",
    )

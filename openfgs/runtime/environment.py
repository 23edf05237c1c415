"""Which environment variables a function's ``user_data`` may set.

An instance's environment is built from scratch (see ``instance.environment``); ``user_data``
adds to it, except for names that steer the dynamic loader, the interpreter or the runtime
itself, which would let a function change how its own — or, on a privileged path, the
service's — processes start. Function create and update refuse those names, and the runtime
skips them should one be stored anyway.
"""

from __future__ import annotations

import re

# A portable environment name: what shells and exec accept everywhere.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

# Prefixes of variables read by ld.so, glibc, CPython, Node.js and our own runtime.
RESERVED_PREFIXES = ("LD_", "PYTHON", "NODE_", "RUNTIME_", "MALLOC_", "GLIBC_", "OPENFGS_")
RESERVED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "LC_ALL",
        "GCONV_PATH",
        "GETCONF_DIR",
        "NIS_PATH",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
        "BASH_ENV",
        "ENV",
        "IFS",
        "SHELLOPTS",
        "PS4",
        "PERL5OPT",
        "PERL5LIB",
        "RUBYOPT",
        "RUBYLIB",
        "OPENSSL_CONF",
        "OPENSSL_ENGINES",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)


def env_name_problem(name: str) -> str | None:
    """Why ``name`` may not be set from ``user_data``, or None when it may."""
    if not _NAME.fullmatch(name):
        return "is not a valid environment variable name (letters, digits and _, not first a digit)"
    upper = name.upper()
    if upper in RESERVED_NAMES or upper.startswith(RESERVED_PREFIXES):
        return "is reserved for the runtime"
    return None

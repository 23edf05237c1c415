"""Warm sync invocation overhead over a trivial endpoint of the same server.

``python -m bench.warm_overhead [--rounds N]`` starts ``openfgs serve`` on a free loopback port
with a fresh data directory, then measures, interleaved in rounds so both see the same noise,
the sequential p50 round trip of ``GET /healthz`` (no auth), of an authenticated
``ListFunctions`` and of a sync invoke (``X-CFF-Request-Version: v1``, token auth) on a warm
instance of the demo function (Python) and of a Node.js function with FunctionGraph's default
code; it prints them and the differences, and stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _p50(call: Callable[[], object], count: int) -> float:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(url: str, exports: dict[str, str], rounds: int, per_round: int) -> dict[str, float]:
    project = exports["OPENFGS_PROJECT_ID"]
    identity = {
        "methods": ["hw_ak_sk"],
        "hw_ak_sk": {
            "access": {"key": exports["OPENFGS_ACCESS_KEY"]},
            "secret": {"key": exports["OPENFGS_SECRET_KEY"]},
        },
    }
    with httpx.Client(base_url=url) as client:
        token = client.post("/v3/auth/tokens", json={"auth": {"identity": identity}}).headers[
            "x-subject-token"
        ]
        headers = {"X-Auth-Token": token, "X-CFF-Request-Version": "v1"}
        urn = f"urn:fss:cn-north-4:{project}:function:default:hello:latest"
        invoke = f"/v2/{project}/fgs/functions/{urn}/invocations"
        listing = f"/v2/{project}/fgs/functions"
        node = {
            "func_name": "hello-node",
            "package": "default",
            "runtime": "Node.js20.15",
            "handler": "index.handler",
            "memory_size": 128,
            "timeout": 30,
            "code_type": "inline",
        }
        client.post(listing, json=node, headers=headers).raise_for_status()
        invoke_node = invoke.replace(":hello:", ":hello-node:")
        for _ in range(50):  # warm the instances and the caches
            client.post(invoke, content=b"{}", headers=headers)
            client.post(invoke_node, content=b"{}", headers=headers)
        figures: dict[str, list[float]] = {"healthz": [], "list": [], "invoke": [], "node": []}
        for _ in range(rounds):
            figures["healthz"].append(_p50(lambda: client.get("/healthz"), per_round))
            figures["list"].append(_p50(lambda: client.get(listing, headers=headers), per_round))
            figures["invoke"].append(
                _p50(lambda: client.post(invoke, content=b"{}", headers=headers), per_round)
            )
            figures["node"].append(
                _p50(lambda: client.post(invoke_node, content=b"{}", headers=headers), per_round)
            )
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=200)
    args = parser.parse_args()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENFGS_")}
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [sys.executable, "-m", "openfgs.cli", "serve", "--port", str(port), "--data-dir", data],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            exports: dict[str, str] = {}
            assert server.stdout is not None
            while "OPENFGS_ENDPOINT" not in exports:
                line = server.stdout.readline()
                if not line:
                    raise SystemExit("openfgs serve stopped before printing its credential")
                match = re.match(r"\s*export (OPENFGS_\w+)=(\S+)", line)
                if match:
                    exports[match.group(1)] = match.group(2)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            p50 = measure(url, exports, args.rounds, args.per_round)
        finally:
            server.terminate()
            server.wait(30)
    print("measure (sequential, one keep-alive connection)      p50 ms")
    print(f"GET /healthz (no auth, one store read)               {p50['healthz']:.3f}")
    print(f"ListFunctions (token auth)                           {p50['list']:.3f}")
    print(f"sync invoke, warm no-op-sized handler (token, v1)    {p50['invoke']:.3f}")
    print(
        f"invoke - healthz                                     {p50['invoke'] - p50['healthz']:.3f}"
    )
    print(f"invoke - authenticated ListFunctions                 {p50['invoke'] - p50['list']:.3f}")
    print(f"sync invoke, warm Node.js default handler (token)    {p50['node']:.3f}")
    print(
        f"Node.js invoke - healthz                             {p50['node'] - p50['healthz']:.3f}"
    )
    rows = {
        "warm sync invoke Node.js p50 − GET /healthz p50 (ms)": round(
            p50["node"] - p50["healthz"], 3
        ),
        "warm sync invoke p50 − GET /healthz p50 (ms)": round(p50["invoke"] - p50["healthz"], 3),
        "warm sync invoke p50 − authenticated ListFunctions p50 (ms)": round(
            p50["invoke"] - p50["list"], 3
        ),
    }
    print(json.dumps(rows, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Percentiles and medians, and the UDP receiver that hears when a handler started."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), interpolated between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if v == v]  # drop NaN
    return statistics.median(clean) if clean else float("nan")


class StartProbe(asyncio.DatagramProtocol):
    """Collects ``"<request id> <time.time_ns()>"`` datagrams sent by the probe handler."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self._waiters: dict[str, asyncio.Future[int]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        request_id, _, stamp = data.decode().partition(" ")
        self.started[request_id] = int(stamp)
        waiter = self._waiters.pop(request_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(int(stamp))

    async def wait(self, request_id: str, timeout: float) -> int:
        """When the handler of ``request_id`` started (``time.time_ns()``)."""
        if request_id in self.started:
            return self.started.pop(request_id)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.pop(request_id, None)
            self.started.pop(request_id, None)


async def open_probe() -> tuple[asyncio.DatagramTransport, StartProbe, int]:
    """A UDP socket on a free loopback port; returns (transport, receiver, port)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        StartProbe, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    return transport, protocol, port

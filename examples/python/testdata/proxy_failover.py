"""Run by TestPythonImage/failover: a proxy session whose provider is killed.

It creates a proxy, changes its state, prints ``serving on PEER`` and waits
for a line on stdin (the test kills that provider's process meanwhile), then
calls again: the call must succeed on another provider with the state the
object had after the last call. Exits non-zero otherwise.
"""

import asyncio
import sys

from offload.remotemedia import RemoteExecutorConfig, RemoteProxyClient


class Tally:
    def __init__(self) -> None:
        self.items: list = []

    def add(self, x):
        self.items.append(x)
        return len(self.items)

    def total(self):
        return sum(self.items)


async def main() -> int:
    config = RemoteExecutorConfig(image=sys.argv[1], timeout=30, max_retries=2)
    async with RemoteProxyClient(config) as client:
        remote = await client.create_proxy(Tally())
        for x in (3, 4, 5):
            await remote.add(x)
        first = remote.provider
        print(f"serving on {first}", flush=True)
        sys.stdin.readline()  # the test kills `first` now
        n = await remote.add(10)
        total = await remote.total()
        print(f"after the kill: {n} items, total {total}, on {remote.provider}", flush=True)
        if (n, total) != (4, 22) or remote.provider == first:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

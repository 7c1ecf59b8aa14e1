"""A class test_remotemedia proxies: it lives in a module of its own, which
the session must ship to the provider."""

import asyncio
import time


class Unsendable:
    """A value that cannot travel back to the requestor."""


class Counter:
    """A counter with every kind of member a proxy serves."""

    label = "counter"

    def __init__(self, start: int = 0):
        self.n = start

    @property
    def value(self) -> int:
        return self.n

    def increment(self, by: int = 1) -> int:
        self.n += by
        return self.n

    async def slow_double(self, x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    def count_up(self, k: int):
        for i in range(k):
            yield self.n + i

    async def ticks(self, k: int):
        for i in range(k):
            yield i

    def kinds(self):
        return (b"raw", {1, 2}, {(1, 2): "pair"}, 1 + 2j, None)

    def fail(self, why: str) -> None:
        raise ValueError(why)

    def unsendable(self) -> Unsendable:
        return Unsendable()

    def sleep(self, s: float) -> None:
        time.sleep(s)

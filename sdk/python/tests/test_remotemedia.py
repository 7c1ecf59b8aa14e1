"""Tests of offload.remotemedia without a node: the provider half runs here as
a local process, started by a fake client that stands in for the node (add,
submit, watch, open_tunnel, cancel). The same flow against real nodes and a
real Python image is examples/python/remotemedia.py, run by make test."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

from offload import _proxyserver as wire
from offload.remotemedia import (RemoteError, RemoteExecutorConfig, RemoteProxyClient, SessionLostError)

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from proxied import Counter, Unsendable  # noqa: E402  (a module the session must ship)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeNode:
    """Just enough of AsyncClient to run sessions as local processes: each
    "provider" is a process; providers are named p1, p2, ..."""

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="offload-fake-")
        self.content: dict[str, str] = {}
        self.tasks: dict[str, dict] = {}
        self.specs: list[dict] = []
        self.n = 0

    def close(self) -> None:
        for t in self.tasks.values():
            if t["proc"].poll() is None:
                t["proc"].kill()
                t["proc"].wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def initiate_connection(self, timeout=None):
        return {}

    async def add(self, path, public=False, cid_version=1, temporary=False):
        cid = f"cid{len(self.content)}"
        dst = os.path.join(self.tmp, cid)
        shutil.copytree(path, dst)
        self.content[cid] = dst
        return cid

    async def submit(self, spec):
        self.specs.append(spec)
        self.n += 1
        tid, provider = f"t{self.n}", f"p{self.n}"
        session = self.content[spec["inputs"][0]["cid"]]
        port = free_port()
        proc = subprocess.Popen([sys.executable, os.path.join(session, "_proxyserver.py"), session, str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.tasks[tid] = {"proc": proc, "port": port, "provider": provider}
        return {"id": tid, "state": "pending"}

    def snap(self, tid):
        t = self.tasks[tid]
        state = "running" if t["proc"].poll() is None else "failed"
        return {"id": tid, "state": state, "provider": t["provider"], "executions": []}

    async def watch(self, tid, on_change=None, timeout=None):
        snap = self.snap(tid)
        if on_change:
            on_change(snap)
        return snap

    async def status(self, tid):
        return self.snap(tid)

    async def open_tunnel(self, tid, port, local=None):
        return {"id": "tun-" + tid, "local": f"127.0.0.1:{self.tasks[tid]['port']}"}

    async def close_tunnel(self, tunnel_id):
        return {}

    async def cancel(self, tid):
        t = self.tasks[tid]
        if t["proc"].poll() is None:
            t["proc"].kill()
            t["proc"].wait()
        return self.snap(tid)


class RemoteProxyTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.node = FakeNode()
        self.addCleanup(self.node.close)

    def client(self, **cfg) -> RemoteProxyClient:
        return RemoteProxyClient(RemoteExecutorConfig(image="python-test", **cfg), client=self.node)  # type: ignore[arg-type]

    async def test_calls_properties_async_generators_kwargs(self) -> None:
        async with self.client(timeout=20) as c:
            remote = await c.create_proxy(Counter(start=10))
            self.assertEqual(await remote.increment(by=5), 15)
            self.assertEqual(await remote.increment(), 16)
            self.assertEqual(await remote.value, 16)           # a property
            self.assertEqual(await remote.label, "counter")    # a plain attribute
            self.assertEqual(await remote.slow_double(4), 8)   # an async method
            self.assertEqual([x async for x in await remote.count_up(3)], [16, 17, 18])
            self.assertEqual([x async for x in await remote.ticks(40)], list(range(40)))  # async generator, 3 batches
            self.assertEqual(await remote.kinds(), (b"raw", {1, 2}, {(1, 2): "pair"}, 1 + 2j, None))
            spec = self.node.specs[0]
            self.assertEqual(spec["service"], True)
            self.assertEqual(spec["image"], "python-test")
            session = self.node.content[spec["inputs"][0]["cid"]]
            shipped = sorted(str(p.relative_to(session)) for p in pathlib.Path(session, "code").rglob("*.py"))
            self.assertIn("code/proxied.py", shipped)
            self.assertIn("code/offload/remotemedia.py", shipped)
            self.assertEqual([p for p in shipped if not p.startswith("code/offload/")], ["code/proxied.py"])

    async def test_remote_exceptions(self) -> None:
        async with self.client() as c:
            remote = await c.create_proxy(Counter())
            with self.assertRaises(ValueError) as cm:   # the builtin class, through RemoteError
                await remote.fail("no good")
            self.assertIsInstance(cm.exception, RemoteError)
            self.assertIn("no good", str(cm.exception))
            self.assertIn("Traceback", cm.exception.remote_traceback)
            with self.assertRaises(AttributeError):
                await remote.missing_attribute
            with self.assertRaises(TypeError) as cm:      # a result that cannot travel back
                await remote.unsendable()
            self.assertIn("cannot be sent back", str(cm.exception))
            self.assertEqual(await remote.increment(), 1)  # the session still serves

    async def test_timeout(self) -> None:
        async with self.client(timeout=0.5) as c:
            remote = await c.create_proxy(Counter())
            with self.assertRaises(asyncio.TimeoutError):
                await remote.sleep(3)
            # The next call uses a new connection and still works.
            c.config.timeout = 10
            self.assertEqual(await remote.increment(), 1)

    async def test_lost_provider_restarts_from_last_state(self) -> None:
        async with self.client(max_retries=2) as c:
            remote = await c.create_proxy(Counter(start=100))
            self.assertEqual(await remote.increment(by=7), 107)
            first = remote.provider
            await self.node.cancel(remote.task_id)          # the provider dies
            self.assertEqual(await remote.increment(), 108)  # state kept, elsewhere
            self.assertNotEqual(remote.provider, first)
            self.assertEqual(self.node.specs[-1]["exclude"], [first])

    async def test_retries_spent(self) -> None:
        async with self.client(max_retries=1) as c:
            remote = await c.create_proxy(Counter())
            for want in (1, 2):  # the budget is per call
                await self.node.cancel(remote.task_id)
                self.assertEqual(await remote.increment(), want)
            await self.node.cancel(remote.task_id)
            c.config.max_retries = 0
            with self.assertRaises(SessionLostError):
                await remote.increment()
            self.assertEqual(await remote.increment(), 3)  # a later call starts again

    async def test_hostile_reply_is_refused(self) -> None:
        # A provider that answers with a pickle (or garbage) never gets it
        # loaded: the reply is JSON or a protocol error.
        with self.assertRaises(wire.ProtocolError):
            wire.decode_reply(b"\x80\x04\x95" + b"cos\nsystem\n")
        arrays = [{"__t": "ndarray", "dtype": "O", "shape": [1], "b64": "AAAAAAAAAAA="},
                  {"__t": "ndarray", "dtype": "<f8", "shape": [1000000], "b64": "AAAAAAAAAAA="}]
        try:
            import numpy  # noqa: F401
        except ImportError:  # without numpy an array stays inert tagged data
            for a in arrays:
                self.assertEqual(wire.from_wire(a), a)
        else:
            for a in arrays:
                with self.assertRaises(wire.ProtocolError):
                    wire.from_wire(a)
        with self.assertRaises(wire.ProtocolError):
            wire.from_wire({"__t": "ndarray", "dtype": "<f8", "shape": [-1], "b64": ""})
        with self.assertRaises(wire.ProtocolError):
            wire.from_wire({"__t": "nope"})
        with self.assertRaises(wire.ProtocolError):
            wire.decode_reply(b"[" * 100000 + b"]" * 100000)

    def test_fuzz_replies(self) -> None:
        """Mutated and random replies raise ProtocolError (or decode to
        plain data), never anything else: the requestor decodes bytes a
        provider chose."""
        import random
        rnd = random.Random(19)
        seeds = [wire.encode_reply({"ok": wire.to_wire(v)}) for v in
                 ([1, "x", None], {"a": b"\x00", 3: (1, 2)}, {1, 2}, 1 + 1j, "text", [[[]]])]
        seeds.append(b'{"ok": {"__t": "ndarray", "dtype": "<f8", "shape": [1], "b64": "AAAAAAAAAAA="}}')
        for i in range(5000):
            data = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randint(1, 4)):
                op = rnd.randrange(3)
                pos = rnd.randrange(len(data) + 1)
                if op == 0 and data:
                    data[min(pos, len(data) - 1)] = rnd.randrange(256)
                elif op == 1:
                    data[pos:pos] = bytes(rnd.choice(b'{}[]",:0123456789_tabe\\') for _ in range(rnd.randint(1, 8)))
                else:
                    del data[pos:pos + rnd.randint(1, 8)]
            try:
                wire.from_wire(wire.decode_reply(bytes(data)).get("ok"))
            except wire.ProtocolError:
                pass

    async def test_oversized_frame_is_refused(self) -> None:
        reader = asyncio.StreamReader()
        reader.feed_data((wire.MAX_FRAME + 1).to_bytes(4, "big"))
        with self.assertRaises(wire.ProtocolError):
            await wire.read_frame(reader)

    async def test_bad_token_is_refused(self) -> None:
        async with self.client() as c:
            remote = await c.create_proxy(Counter())
            remote._token = b"x" * 32
            with self.assertRaises(PermissionError):
                await remote._dial(remote._session.local, remote.task_id, 60)

    async def test_pip_packages_need_wheels(self) -> None:
        async with self.client(pip_packages=["textstats"]) as c:
            with self.assertRaises(ValueError):
                await c.create_proxy(Counter())

    async def test_values_round_trip(self) -> None:
        v = {"a": [1, 2.5, None, True], "b": b"\x00\xff", "t": (1, "x"), "s": frozenset({3}), 5: "int key",
             "__t": "a key that looks like a tag"}
        back = wire.from_wire(json.loads(json.dumps(wire.to_wire(v))))
        self.assertEqual(back, {"a": [1, 2.5, None, True], "b": b"\x00\xff", "t": (1, "x"), "s": {3}, 5: "int key",
                                "__t": "a key that looks like a tag"})
        with self.assertRaises(TypeError):
            wire.to_wire(Unsendable())


if __name__ == "__main__":
    unittest.main()

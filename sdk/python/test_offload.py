"""Tests of offload.py against a real node.

node/python_test.go starts a provider and a requestor and runs these with:

  OFFLOAD_HOME           the requestor's home (its api and api.token files)
  OFFLOAD_TEST_IMAGE     an image or WASM module CID of the test program
                         (internal/testimage/hello: echo, env, cat, exit, sleep)
  OFFLOAD_TEST_RUNTIME   "wasm" or "docker"
  OFFLOAD_TEST_PROVIDER  the provider's peer id

Without OFFLOAD_TEST_IMAGE every test skips.
"""

import asyncio
import json
import os
import pathlib
import tempfile
import unittest

import offload

IMAGE = os.environ.get("OFFLOAD_TEST_IMAGE")
RUNTIME = os.environ.get("OFFLOAD_TEST_RUNTIME") or None
PROVIDER = os.environ.get("OFFLOAD_TEST_PROVIDER")


@unittest.skipUnless(IMAGE, "OFFLOAD_TEST_IMAGE not set: run through `go test ./node -run TestPythonClient`")
class ClientTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.c = offload.Client()
        self.ident = await self.c.initiate_connection(timeout=10)

    async def asyncTearDown(self):
        await self.c.disconnect()

    async def test_connection_and_identity(self):
        self.assertTrue(self.ident["id"].startswith("12D3KooW"))
        token = (pathlib.Path(os.environ["OFFLOAD_HOME"]) / "api.token").read_text().strip()
        self.assertNotIn(token, repr(self.c))

    async def test_run_returns_the_result(self):
        res = await self.c.run(IMAGE, ["echo", "hi", "from", "python"], runtime=RUNTIME, timeout=60)
        self.assertEqual(res["state"], "completed", res.get("error"))
        self.assertEqual(res["stdout"], "hi from python\n")
        self.assertEqual(res["exit_code"], 0)
        self.assertEqual(res["provider"], PROVIDER)
        self.assertEqual(len(res["executions"]), 1)

    async def test_logs_follow(self):
        task = await self.c.submit(await self.c._spec(IMAGE, ["tick", "3", "200ms"], None, None, RUNTIME, timeout=60))
        lines = []
        async for chunk in self.c.logs(task["id"], follow=True):
            lines.extend(l for l in chunk["text"].splitlines() if l)
        self.assertEqual([l.split()[:2] for l in lines], [["tick", "1"], ["tick", "2"], ["tick", "3"]])
        again = [c async for c in self.c.logs(task["id"])]
        self.assertTrue(all("next" in c for c in again))

    async def test_run_shell_string_and_failure(self):
        res = await self.c.run(IMAGE, "exit 3", runtime=RUNTIME)
        self.assertEqual(res["state"], "failed")
        self.assertEqual(res["exit_code"], 3)
        self.assertIn("exit code 3", res["error"])

    async def test_offload_task_callback_and_join(self):
        got = {}
        done = asyncio.Event()

        async def async_cb(result):
            got[result["task_id"]] = result
            done.set()

        big = bytes(range(256)) * 200  # 51 KiB, not text: goes as content
        await self.c.offload_task("small", IMAGE, "hello data", lambda r: got.__setitem__(r["task_id"], r),
                                  runtime=RUNTIME, command=["env"], resource={"cpu": 0.5, "memory": 64})
        await self.c.offload_task("json", IMAGE, {"k": [1, 2]}, async_cb, runtime=RUNTIME, command=["env"])
        nid = await self.c.offload_task("big", IMAGE, big, lambda r: got.__setitem__(r["task_id"], r),
                                        runtime=RUNTIME, command=["cat", offload.data_path(RUNTIME)])
        with self.assertRaises(ValueError):
            await self.c.offload_task("big", IMAGE, None, None, runtime=RUNTIME)
        results = await self.c.join(task_timeout=60, join_timeout=120)

        self.assertEqual(set(results), {"small", "json", "big"})
        self.assertEqual(set(got), {"small", "json", "big"})
        self.assertTrue(done.is_set())
        for label, r in got.items():
            self.assertEqual(r["state"], "completed", f"{label}: {r.get('error')}")
        self.assertIn(f"{offload.DATA_ENV}=hello data\n", got["small"]["stdout"])
        self.assertEqual(got["small"]["spec"]["resources"], {"cpus": 0.5, "memory_bytes": 64 << 20})
        self.assertIn(f"{offload.DATA_ENV}={json.dumps({'k': [1, 2]})}\n", got["json"]["stdout"])
        self.assertEqual(got["big"]["stdout_size"], len(big))
        self.assertEqual(got["big"]["id"], nid)
        # Labels work wherever an id does.
        self.assertEqual((await self.c.status("small"))["id"], got["small"]["id"])

    async def test_join_cancels_a_task_over_its_timeout(self):
        calls = []
        await self.c.offload_task("slow", IMAGE, None, calls.append, runtime=RUNTIME, command=["sleep", "60s"])
        res = await self.c.join(task_timeout=1, join_timeout=30)
        self.assertEqual(res["slow"]["state"], "canceled")
        self.assertEqual(len(calls), 1)

    async def test_join_timeout_raises(self):
        await self.c.offload_task("slow2", IMAGE, None, None, runtime=RUNTIME, command=["sleep", "60s"])
        with self.assertRaises(asyncio.TimeoutError):
            await self.c.join(join_timeout=0.5)
        await self.c.cancel("slow2")

    async def test_uplink_downlink(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            f = tmp / "in.bin"
            f.write_bytes(os.urandom(700_000))
            d = tmp / "dir"
            (d / "sub").mkdir(parents=True)
            (d / "sub" / "x.txt").write_text("in a directory")
            cid_f, cid_d = await self.c.uplink([f, str(d)])
            self.assertNotEqual(cid_f, cid_d)
            self.assertEqual(await self.c.uplink(str(f)), [cid_f])  # same bytes, same CID

            out = await self.c.downlink(cid_f, tmp / "out.bin")
            self.assertEqual(out.read_bytes(), f.read_bytes())
            out_d = await self.c.downlink(cid_d, tmp / "out-dir")
            self.assertEqual((out_d / "sub" / "x.txt").read_text(), "in a directory")
            with self.assertRaises(FileExistsError):
                await self.c.downlink(cid_f, out)

            # An uplinked file as a task input.
            res = await self.c.run(IMAGE, ["cat", "/inputs/d/sub/x.txt"], runtime=RUNTIME, inputs=[(cid_d, "/inputs/d")])
            self.assertEqual(res["stdout"], "in a directory", res.get("error"))
            # A size declared below what the node holds is refused at submit.
            with self.assertRaises(offload.OffloadError) as cm:
                await self.c.run(IMAGE, ["cat", "/inputs/f"], runtime=RUNTIME, inputs=[(cid_f, "/inputs/f", 1024)])
            self.assertEqual(cm.exception.status, 400, cm.exception.message)
            self.assertIn("declared size 1024 bytes is smaller than", cm.exception.message)

    async def test_add_public_and_publish(self):
        with tempfile.TemporaryDirectory() as tmp:
            f = pathlib.Path(tmp) / "pub.bin"
            f.write_bytes(os.urandom(300_000))
            private = await self.c.add(f)
            self.assertEqual(await self.c.add(f, public=True), private)  # same bytes, same CID
            d = pathlib.Path(tmp) / "pubdir"
            d.mkdir()
            (d / "x.txt").write_text("published directory")
            cid_d = await self.c.add(d, public=True)
            await self.c.publish(cid_d)  # publishing again is harmless
            await self.c.publish(private)
            pins = {p["cid"] for p in await self.c._json("GET", "/api/v1/pins")}
            self.assertLessEqual({private, cid_d}, pins)
        # Content the node does not hold cannot be published.
        with self.assertRaises(offload.OffloadError) as e:
            await self.c.publish("bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am")
        self.assertEqual(e.exception.status, 404, e.exception.message)

    async def test_pool(self):
        everyone = await self.c.pool()
        self.assertIn(PROVIDER, [p["peer"] for p in everyone])
        self.assertEqual(len(await self.c.pool(arch="any", gpus="any")), len(everyone))
        self.assertEqual(await self.c.pool(gpus=64), [])
        with self.assertRaises(ValueError):
            await self.c.pool(colour="red")

    async def test_errors_say_what_is_wrong(self):
        with self.assertRaises(offload.OffloadError) as cm:
            await self.c.submit({"image": "x:1", "timeout_ms": -1})
        self.assertEqual(cm.exception.status, 400)
        with self.assertRaises(offload.OffloadError) as cm:
            await self.c.status("no-such-task")
        self.assertEqual(cm.exception.status, 404)
        self.assertEqual(await self.c.list(state="running"), [])

    async def test_no_node(self):
        with tempfile.TemporaryDirectory() as home:
            c = offload.Client(home=home)
            with self.assertRaises(offload.NoNodeError) as cm:
                await c.initiate_connection(timeout=0.2)
            self.assertIn("offload node --home", str(cm.exception))


if __name__ == "__main__":
    unittest.main()

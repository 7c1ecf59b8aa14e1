"""Tests of the offload package against a real node.

node/python_test.go installs the package into a fresh virtual environment
(no index) and runs these from outside the source tree, so the installed
copy is tested, with:

  OFFLOAD_HOME           the requestor's home (its api and api.token files)
  OFFLOAD_TEST_IMAGE     an image or WASM module CID of the test program
                         (internal/testimage/hello: echo, env, cat, exit, sleep)
  OFFLOAD_TEST_RUNTIME   "wasm" or "docker"
  OFFLOAD_TEST_PROVIDER  the provider's peer id

Without OFFLOAD_TEST_IMAGE the tests that need a node skip.
"""

import asyncio
import json
import os
import pathlib
import tempfile
import threading
import unittest

import offload
from offload import errors

IMAGE = os.environ.get("OFFLOAD_TEST_IMAGE")
RUNTIME = os.environ.get("OFFLOAD_TEST_RUNTIME") or None
PROVIDER = os.environ.get("OFFLOAD_TEST_PROVIDER")
NEEDS_NODE = unittest.skipUnless(IMAGE, "OFFLOAD_TEST_IMAGE not set: run through `go test ./node -run TestPythonClient`")


class OfflineTest(unittest.TestCase):
    """What needs no node."""

    def test_installed_copy_is_typed(self):
        pkg = pathlib.Path(offload.__file__).parent
        self.assertTrue((pkg / "py.typed").exists())
        if os.environ.get("OFFLOAD_TEST_INSTALLED"):
            self.assertIn("site-packages", str(pkg))

    def test_sizes_and_resources(self):
        self.assertEqual(offload.parse_size("512m"), 512 << 20)
        self.assertEqual(offload.parse_size("2GiB"), 2 << 30)
        self.assertEqual(offload.parse_size(64), 64 << 20)
        self.assertEqual(offload.parse_size("1024"), 1024)
        with self.assertRaises(ValueError):
            offload.parse_size("lots")
        spec = offload.Client(url="http://127.0.0.1:1", token="t").task_spec(
            "img", "echo 'a b'", resource={"cpu": 2, "memory": "1g"}, timeout=1.5, retries=0, provider=None)
        self.assertEqual(spec, {"image": "img", "cmd": ["echo", "a b"], "resources": {"cpus": 2.0, "memory_bytes": 1 << 30},
                                "timeout_ms": 1500, "retries": 0})

    def test_error_classes(self):
        self.assertIsInstance(errors.error_for_status(404, "x"), offload.NotFoundError)
        self.assertIsInstance(errors.error_for_status(400, "x"), ValueError)
        self.assertIsInstance(errors.error_for_status(503, "x"), offload.BusyError)
        self.assertIsInstance(errors.error_for_status(418, "x"), offload.OffloadError)
        nobody = errors.error_for_task({"id": "t", "state": "failed", "executions": [],
                                        "error": "no provider took the task: 1 declined (no capacity)"})
        self.assertIsInstance(nobody, offload.NoProviderError)
        failed = errors.error_for_task({"id": "t", "state": "failed", "exit_code": 3, "executions": [{}],
                                        "error": "exit code 3"})
        self.assertNotIsInstance(failed, offload.NoProviderError)
        self.assertIn("exit code 3", str(failed))
        self.assertIsInstance(offload.TaskTimeoutError("x"), asyncio.TimeoutError)

    def test_no_node(self):
        with tempfile.TemporaryDirectory() as home:
            with self.assertRaises(offload.NoNodeError) as cm:
                offload.Client(home=home).initiate_connection(timeout=0.2)
            self.assertIn("offload node --home", str(cm.exception))
            self.assertIsInstance(cm.exception, ConnectionError)


@NEEDS_NODE
class ClientTest(unittest.TestCase):
    """The blocking Client."""

    def setUp(self):
        self.c = offload.Client()
        self.ident = self.c.initiate_connection(timeout=10)

    def tearDown(self):
        self.c.disconnect()

    def test_connection_and_identity(self):
        self.assertTrue(self.ident["id"].startswith("12D3KooW"))
        token = (pathlib.Path(os.environ["OFFLOAD_HOME"]) / "api.token").read_text().strip()
        self.assertNotIn(token, repr(self.c))

    def test_run_returns_the_result(self):
        res = self.c.run(IMAGE, ["echo", "hi", "from", "python"], runtime=RUNTIME, timeout=60)
        self.assertEqual(res["state"], "completed", res.get("error"))
        self.assertEqual(res["stdout"], "hi from python\n")
        self.assertEqual(res["exit_code"], 0)
        self.assertEqual(res["provider"], PROVIDER)
        self.assertEqual(len(res["executions"]), 1)

    def test_failure_and_check(self):
        res = self.c.run(IMAGE, "exit 3", runtime=RUNTIME)
        self.assertEqual(res["state"], "failed")
        self.assertEqual(res["exit_code"], 3)
        self.assertIn("exit code 3", res["error"])
        with self.assertRaises(offload.TaskFailedError) as cm:
            self.c.run(IMAGE, "exit 4", runtime=RUNTIME, retries=0, check=True)
        self.assertEqual(cm.exception.task["exit_code"], 4)
        self.assertNotIsInstance(cm.exception, offload.NoProviderError)

    def test_no_provider(self):
        with self.assertRaises(offload.NoProviderError) as cm:
            self.c.run(IMAGE, ["echo"], runtime=RUNTIME, resource={"gpu": 64}, check=True, wait_timeout=60)
        self.assertIn("no provider", str(cm.exception))

    def test_labels_are_required_of_providers(self):
        with self.assertRaises(offload.NoProviderError) as cm:
            self.c.run(IMAGE, ["echo"], runtime=RUNTIME, labels={"fpga": "*"}, retries=0, check=True, wait_timeout=60)
        self.assertIn("no label fpga", str(cm.exception))
        with self.assertRaises(offload.BadRequestError):
            self.c.submit(self.c.task_spec(IMAGE, ["echo"], runtime=RUNTIME, labels={"a=b": "c"}))

    def test_build_request_carries_its_options(self):
        with tempfile.TemporaryDirectory() as ctx:
            (pathlib.Path(ctx) / "Dockerfile").write_text("FROM scratch\nARG A\nCOPY app /app\n")
            (pathlib.Path(ctx) / "app").write_text("x")
            task = self.c.build_image(ctx, tag="py build", timeout=30, memory="64m", build_args={"A": 1},
                                      network=True, labels={"zone": "eu"})
            try:
                spec = task["spec"]
                self.assertEqual((spec["runtime"], spec["env"], spec["labels"], spec["resources"]["memory_bytes"]),
                                 ("build", {"A": "1"}, {"build-network": "*", "zone": "eu"}, 64 << 20))
            finally:
                try:
                    self.c.cancel(task["id"])
                except offload.ConflictError:
                    pass  # already failed: no provider here builds
            (pathlib.Path(ctx) / "Dockerfile").write_text("FROM scratch\nCOPY ../x /x\n")
            with self.assertRaises(offload.BadRequestError) as cm:
                self.c.build_image(ctx)
            self.assertIn("leaves the build context", str(cm.exception))

    def test_task_data_is_held_for_its_task(self):
        big = "held " * (offload.MAX_INLINE_DATA // 4)
        task = self.c.submit(self.c.task_spec(IMAGE, ["echo", "held"], runtime=RUNTIME, data=big))
        [cid] = [i["cid"] for i in task["spec"]["inputs"]]
        names = {p["cid"]: p["name"] for p in self.c.pins()}
        # Released by the node once the task has ended, not kept for good.
        self.assertEqual(names.get(cid), "task:" + task["id"])
        self.assertEqual(self.c.wait(task["id"], timeout=60)["state"], "completed")
        # The user's own pin of the same bytes is never taken by a task.
        mine = "mine " * (offload.MAX_INLINE_DATA // 4)
        mine_cid = self.c.add_bytes(mine.encode(), name="mine")
        task = self.c.submit(self.c.task_spec(IMAGE, ["echo", "mine"], runtime=RUNTIME, data=mine))
        if RUNTIME != "wasm":  # WASM wraps data in a directory: another CID
            self.assertEqual([i["cid"] for i in task["spec"]["inputs"]], [mine_cid])
        names = {p["cid"]: p["name"] for p in self.c.pins()}
        self.assertEqual(names.get(mine_cid), "mine")
        self.c.wait(task["id"], timeout=60)

    def test_wait_timeout_and_cancel(self):
        task = self.c.submit(self.c.task_spec(IMAGE, ["sleep", "60s"], runtime=RUNTIME))
        with self.assertRaises(offload.TaskTimeoutError):
            self.c.wait(task["id"], timeout=0.5)
        self.c.cancel(task["id"])
        self.assertEqual(self.c.wait(task["id"], timeout=30)["state"], "canceled")
        with self.assertRaises(offload.ConflictError):
            self.c.cancel(task["id"])

    def test_watch_sees_every_state(self):
        task = self.c.submit(self.c.task_spec(IMAGE, ["echo", "w"], runtime=RUNTIME))
        seen = []
        final = self.c.watch(task["id"], lambda s: seen.append(s["state"]), timeout=60)
        self.assertEqual(final["state"], "completed")
        self.assertEqual(seen[-1], "completed")

    def test_logs_follow(self):
        task = self.c.submit(self.c.task_spec(IMAGE, ["tick", "3", "200ms"], runtime=RUNTIME, timeout=60))
        lines = []
        for chunk in self.c.logs(task["id"], follow=True):
            lines.extend(l for l in chunk["text"].splitlines() if l)
        self.assertEqual([l.split()[:2] for l in lines], [["tick", "1"], ["tick", "2"], ["tick", "3"]])
        self.assertTrue(all("next" in c for c in self.c.logs(task["id"])))

    def test_offload_task_callback_and_join(self):
        got = {}
        big = bytes(range(256)) * 200  # 51 KiB, not text: goes as content
        self.c.offload_task("small", IMAGE, "hello data", lambda r: got.__setitem__(r["task_id"], r),
                            runtime=RUNTIME, command=["env"], resource={"cpu": 0.5, "memory": 64})
        nid = self.c.offload_task("big", IMAGE, big, lambda r: got.__setitem__(r["task_id"], r),
                                  runtime=RUNTIME, command=["cat", offload.data_path(RUNTIME)])
        with self.assertRaises(ValueError):
            self.c.offload_task("big", IMAGE, None, None, runtime=RUNTIME)
        results = self.c.join(task_timeout=60, join_timeout=120)
        self.assertEqual(set(results), {"small", "big"})
        self.assertEqual(set(got), {"small", "big"})
        self.assertIn(f"{offload.DATA_ENV}=hello data\n", got["small"]["stdout"])
        self.assertEqual(got["small"]["spec"]["resources"], {"cpus": 0.5, "memory_bytes": 64 << 20})
        self.assertEqual(got["big"]["stdout_size"], len(big))
        self.assertEqual(got["big"]["id"], nid)
        self.assertEqual(self.c.status("small")["id"], got["small"]["id"])

    def test_join_cancels_and_times_out(self):
        calls = []
        self.c.offload_task("slow", IMAGE, None, calls.append, runtime=RUNTIME, command=["sleep", "60s"])
        res = self.c.join(task_timeout=1, join_timeout=30)
        self.assertEqual(res["slow"]["state"], "canceled")
        self.assertEqual(len(calls), 1)
        self.c.offload_task("slow2", IMAGE, None, None, runtime=RUNTIME, command=["sleep", "60s"])
        with self.assertRaises(offload.TaskTimeoutError):
            self.c.join(join_timeout=0.5)
        self.c.cancel("slow2")

    def test_uplink_downlink(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            f = tmp / "in.bin"
            f.write_bytes(os.urandom(700_000))
            d = tmp / "dir"
            (d / "sub").mkdir(parents=True)
            (d / "sub" / "x.txt").write_text("in a directory")
            cid_f, cid_d = self.c.uplink([f, str(d)])
            self.assertNotEqual(cid_f, cid_d)
            self.assertEqual(self.c.uplink(str(f)), [cid_f])  # same bytes, same CID
            self.assertEqual(self.c.add_bytes(f.read_bytes(), name="in.bin"), cid_f)
            self.assertEqual(self.c.cat(cid_f), f.read_bytes())

            out = self.c.downlink(cid_f, tmp / "out.bin")
            self.assertEqual(out.read_bytes(), f.read_bytes())
            out_d = self.c.downlink(cid_d, tmp / "out-dir")
            self.assertEqual((out_d / "sub" / "x.txt").read_text(), "in a directory")
            with self.assertRaises(FileExistsError):
                self.c.downlink(cid_f, out)
            with self.assertRaises(FileNotFoundError):
                self.c.uplink(tmp / "missing")

            res = self.c.run(IMAGE, ["cat", "/inputs/d/sub/x.txt"], runtime=RUNTIME, inputs=[(cid_d, "/inputs/d")])
            self.assertEqual(res["stdout"], "in a directory", res.get("error"))
            # A size declared below what the node holds is refused at submit.
            with self.assertRaises(offload.BadRequestError) as cm:
                self.c.run(IMAGE, ["cat", "/inputs/f"], runtime=RUNTIME, inputs=[(cid_f, "/inputs/f", 1024)])
            self.assertEqual(cm.exception.status, 400, cm.exception.message)
            self.assertIn("declared size 1024 bytes is smaller than", cm.exception.message)

    def test_results_of_a_task(self):
        res = self.c.run(IMAGE, ["write", "/outputs/r.txt", "result"], runtime=RUNTIME, check=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = self.c.results(res["id"], pathlib.Path(tmp) / "out")
            self.assertEqual((out / "r.txt").read_text(), "result")

    def test_add_public_and_publish(self):
        with tempfile.TemporaryDirectory() as tmp:
            f = pathlib.Path(tmp) / "pub.bin"
            f.write_bytes(os.urandom(300_000))
            private = self.c.add(f)
            self.assertEqual(self.c.add(f, public=True), private)
            self.c.publish(private)
            self.assertIn(private, {p["cid"] for p in self.c.pins()})
        with self.assertRaises(offload.NotFoundError):
            self.c.publish("bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am")

    def test_pool(self):
        everyone = self.c.pool()
        self.assertIn(PROVIDER, [p["peer"] for p in everyone])
        self.assertEqual(len(self.c.pool(arch="any", gpus="any")), len(everyone))
        self.assertEqual(self.c.pool(gpus=64), [])
        with self.assertRaises(ValueError):
            self.c.pool(colour="red")

    def test_errors_say_what_is_wrong(self):
        with self.assertRaises(offload.BadRequestError) as cm:
            self.c.submit({"image": "x:1", "timeout_ms": -1})
        self.assertEqual(cm.exception.status, 400)
        with self.assertRaises(offload.NotFoundError):
            self.c.status("no-such-task")
        with self.assertRaises(offload.NotFoundError):
            self.c.close_tunnel("no-such-tunnel")
        with self.assertRaises(offload.NotFoundError):
            self.c.remove_volume("no-such-volume")
        with self.assertRaises(offload.UnauthorizedError):
            offload.Client(url=self.c.url, token="wrong").id()

    def test_tunnel_needs_a_running_service(self):
        res = self.c.run(IMAGE, ["echo"], runtime=RUNTIME, check=True)
        with self.assertRaises(offload.OffloadError) as cm:
            self.c.open_tunnel(res["id"], 8080)
        self.assertIn(cm.exception.status, (400, 409))

    def test_threads_share_a_client(self):
        out, errs = {}, []

        def one(i):
            try:
                out[i] = self.c.run(IMAGE, ["echo", str(i)], runtime=RUNTIME, check=True)["stdout"]
            except Exception as e:  # noqa: BLE001
                errs.append(e)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errs, [])
        self.assertEqual(out, {i: f"{i}\n" for i in range(4)})


@NEEDS_NODE
class AsyncClientTest(unittest.IsolatedAsyncioTestCase):
    """The same calls as coroutines."""

    async def asyncSetUp(self):
        self.c = offload.AsyncClient()
        await self.c.initiate_connection(timeout=10)

    async def asyncTearDown(self):
        await self.c.disconnect()

    async def test_run_many_at_once(self):
        results = await asyncio.gather(*(self.c.run(IMAGE, ["echo", str(i)], runtime=RUNTIME, check=True)
                                         for i in range(8)))
        self.assertEqual([r["stdout"] for r in results], [f"{i}\n" for i in range(8)])

    async def test_offload_task_callback_and_join(self):
        got = {}
        done = asyncio.Event()

        async def async_cb(result):
            got[result["task_id"]] = result
            done.set()

        await self.c.offload_task("json", IMAGE, {"k": [1, 2]}, async_cb, runtime=RUNTIME, command=["env"])
        await self.c.offload_task("sync", IMAGE, "x", lambda r: got.__setitem__(r["task_id"], r),
                                  runtime=RUNTIME, command=["env"])
        results = await self.c.join(task_timeout=60, join_timeout=120)
        self.assertEqual(set(results), {"json", "sync"})
        self.assertTrue(done.is_set())
        self.assertIn(f"{offload.DATA_ENV}={json.dumps({'k': [1, 2]})}\n", got["json"]["stdout"])

    async def test_join_timeout_raises(self):
        await self.c.offload_task("slow", IMAGE, None, None, runtime=RUNTIME, command=["sleep", "60s"])
        with self.assertRaises(asyncio.TimeoutError):
            await self.c.join(join_timeout=0.5)
        await self.c.cancel("slow")

    async def test_cancelling_a_wait_ends_it(self):
        task = await self.c.submit(await self.c.task_spec(IMAGE, ["sleep", "60s"], runtime=RUNTIME))
        w = asyncio.ensure_future(self.c.wait(task["id"]))
        await asyncio.sleep(0.3)
        w.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await w
        await self.c.cancel(task["id"])
        self.assertEqual((await self.c.wait(task["id"], timeout=30))["state"], "canceled")

    async def test_logs_and_watch(self):
        task = await self.c.submit(await self.c.task_spec(IMAGE, ["tick", "2", "100ms"], runtime=RUNTIME))
        texts = [c["text"] async for c in self.c.logs(task["id"], follow=True)]
        self.assertEqual(len("".join(texts).splitlines()), 2)
        seen = []

        async def on_change(s):
            seen.append(s["state"])
        final = await self.c.watch(task["id"], on_change, timeout=30)
        self.assertEqual(final["state"], "completed")
        self.assertEqual(seen, ["completed"])

    async def test_content(self):
        with tempfile.TemporaryDirectory() as tmp:
            f = pathlib.Path(tmp) / "a.txt"
            f.write_text("async content")
            cid = await self.c.add(f)
            self.assertEqual(await self.c.cat(cid), b"async content")
            out = await self.c.downlink(cid, pathlib.Path(tmp) / "b.txt")
            self.assertEqual(out.read_text(), "async content")
        with self.assertRaises(offload.NotFoundError):
            await self.c.status("no-such-task")


if __name__ == "__main__":
    unittest.main()

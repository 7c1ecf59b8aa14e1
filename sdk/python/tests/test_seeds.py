"""Offline tests of the seed modules' translations (no node needed); the
scripts in examples/python run each seed against real nodes."""

import asyncio
import pathlib
import tempfile
import unittest

from offload import dphi, golem, hwf, mecanywhere


class MECAnywhereTest(unittest.TestCase):
    def test_callbacks_are_called_by_arity(self):
        got = []
        result = {"task_id": "t", "state": "failed", "stdout": "out", "error": "exit code 1", "id": "n1"}
        mecanywhere._adapt(lambda task_id, status, response, err, corr_id: got.append(
            (task_id, status, response, err, corr_id)))(result)
        mecanywhere._adapt(lambda task_id, response: got.append((task_id, response)))(result)
        mecanywhere._adapt(got.append)(result)
        self.assertEqual(got, [("t", 0, "out", "exit code 1", "n1"), ("t", "out"), result])


class HWFTest(unittest.TestCase):
    def test_matching_and_pool(self):
        p = {"peer": "a", "hardware": {"os": "linux", "cpu_model": "AMD EPYC", "cpus": 8, "memory_bytes": 32 << 30,
                                       "gpus": [{"model": "NVIDIA H100"}]}}
        for hw, want in [({"os": "any", "cpu": "any", "gpu": "any", "ram": "any"}, True), ({"os": "Linux"}, True),
                         ({"os": "windows"}, False), ({"cpu": "epyc"}, True), ({"cpu": 16}, False),
                         ({"gpu": "h100"}, True), ({"gpu": 2}, False), ({"ram": 16}, True), ({"ram": "64g"}, False)]:
            self.assertEqual(hwf._matches(p, hw), want, hw)
        pool = hwf.HardwarePool([p, dict(p, peer="b")])
        self.assertEqual(pool.get("cpu", "gpu"), [{"cpu": "AMD EPYC", "gpu": "NVIDIA H100"}])

    def test_gpu_model_is_a_requirement(self):
        class Pool:
            def pool(self):
                return [{"peer": "a", "hardware": {"os": "linux", "gpus": [{"model": "NVIDIA H100"}]}}]

        hub = hwf.Hub(client=Pool(), image="img")
        spec = hub._spec(hwf.Task(hwf.Stage(cmd="nvidia-smi"), hardware={"gpu": "h100"}), None)
        self.assertEqual((spec["resources"], spec["gpu"]), ({"gpus": 1}, {"models": ["h100"]}))
        spec = hub._spec(hwf.Task(hwf.Stage(cmd="x"), hardware={"gpu": 2}), {"gpu": "any"})
        self.assertNotIn("gpu", spec)

    def test_hardware_is_a_machine_requirement(self):
        class Pool:
            def pool(self):
                return [{"peer": "a", "hardware": {"os": "linux", "cpu_model": "AMD EPYC", "cpus": 8,
                                                   "memory_bytes": 32 << 30, "gpus": []}},
                        {"peer": "b", "hardware": {"os": "linux", "cpu_model": "Intel Xeon", "cpus": 2,
                                                   "memory_bytes": 4 << 30, "gpus": []}}]

        hub = hwf.Hub(client=Pool(), image="img")
        spec = hub._spec(hwf.Task(hwf.Stage(cmd="x"), hardware={"os": "Linux", "cpu": 4, "ram": 16}), None)
        # No list of providers to exclude: the requirement travels.
        self.assertEqual(spec["machine"], {"os": "Linux", "cpus": 4, "memory_bytes": 16 << 30})
        self.assertNotIn("exclude", spec)
        spec = hub._spec(hwf.Task(hwf.Stage(cmd="x"), hardware={"cpu": "epyc", "ram": "8g"}), None)
        self.assertEqual(spec["machine"], {"cpu_model": "epyc", "memory_bytes": 8 << 30})
        self.assertNotIn("machine", hub._spec(hwf.Task(hwf.Stage(cmd="x"), hardware={"os": "any"}), None))
        with self.assertRaises(hwf.NoProviderError):
            hub._spec(hwf.Task(hwf.Stage(cmd="x"), hardware={"cpu": 64}), None)

    def test_task_shape(self):
        with self.assertRaises(TypeError):
            hwf.Task("not a stage")
        with self.assertRaises(ValueError):
            hwf.Stage(name="empty")
        t = hwf.Task(hwf.Stage(cmd="a"), hwf.Artifacts("log.txt", "/outputs/x"))
        self.assertEqual(t.stages[0].name, "stage1")
        self.assertEqual(t.artifact_paths(), ["/work/log.txt", "/outputs/x"])
        self.assertEqual(hwf.Measure(12.0)(), 12.0)


class DPhiTest(unittest.TestCase):
    def test_paths_and_names(self):
        self.assertEqual(dphi._rel("./echo-test/Dockerfile"), "echo-test/Dockerfile")
        self.assertEqual(dphi._rel("/echo-test"), "echo-test")
        with self.assertRaises(dphi.DPhiError):
            dphi._rel("../etc/passwd")
        self.assertEqual(dphi._pod(""), "default")
        with self.assertRaises(dphi.DPhiError):
            dphi._pod("no spaces")
        self.assertEqual(dphi._phase("bidding"), "Pending")
        self.assertEqual(dphi._phase("completed"), "Succeeded")
        self.assertEqual(dphi._utc_ms("1970-01-01T00:00:01Z"), 1000)
        self.assertEqual(dphi._utc_ms("1970-01-01T02:00:01+02:00"), 1000)
        with self.assertRaises(dphi.DPhiError):
            dphi._utc_ms("tomorrow")

    def test_node_maps_to_requirements(self):
        class Pool:
            def __init__(self, providers):
                self.providers = providers

            def pool(self):
                return self.providers

        fpga = {"peer": "f", "hardware": {"labels": {"fpga": "xilinx"}, "gpus": []}, "free": {"cpus": 1}}
        gpu = {"peer": "g", "hardware": {"labels": {}, "gpus": [{"model": "H100"}]}, "free": {"cpus": 1}}
        em = dphi.EMClient(client=Pool([fpga, gpu]))
        try:
            spec = {}
            em._node_filter("FPGA", spec)
            # The label is required of whoever runs it: no list of others
            # to exclude, so a provider learnt of later cannot take it.
            self.assertEqual(spec, {"labels": {"fpga": "*"}})
            spec = {}
            em._node_filter("GPU", spec)
            self.assertEqual(spec, {"resources": {"gpus": 1}})
            spec = {}
            em._node_filter("MPU", spec)
            self.assertEqual(spec, {})
            with self.assertRaises(dphi.ProviderBusyError):
                em._node_filter("TPU", {})
            em.client = Pool([dict(fpga, free={"cpus": 0})])
            with self.assertRaisesRegex(dphi.ProviderBusyError, "busy"):
                em._node_filter("FPGA", {})
        finally:
            em.close()

    def test_error_classes(self):
        self.assertTrue(issubclass(dphi.MissingFileError, FileNotFoundError))
        self.assertTrue(issubclass(dphi.ProviderBusyError, dphi.DPhiError))

    def test_tar_tags(self):
        import io
        import json
        import tarfile
        with tempfile.TemporaryDirectory() as d:
            path = pathlib.Path(d) / "img.tar"
            data = json.dumps([{"RepoTags": ["a/b:1"]}]).encode()
            with tarfile.open(path, "w") as tar:
                ti = tarfile.TarInfo("manifest.json")
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            self.assertEqual(dphi._tar_tags(path), ["a/b:1"])
            (pathlib.Path(d) / "junk").write_text("not a tarball")
            with self.assertRaises(dphi.MissingImageError):
                dphi._tar_tags(pathlib.Path(d) / "junk")


class GolemTest(unittest.IsolatedAsyncioTestCase):
    async def test_payload_script_and_task(self):
        p = await golem.vm.repo(image_hash="bafyimage", min_mem_gib=0.5, min_cpu_threads=2)
        self.assertEqual(p.resources(), {"memory_bytes": 1 << 29, "cpus": 2.0})
        ctx = golem.WorkContext(golem.Golem.__new__(golem.Golem), p, [])
        s = ctx.new_script()
        fut = s.run("/bin/sh", "-c", "echo hi")
        self.assertIsInstance(fut, asyncio.Future)
        s.upload_json({"a": 1}, "/golem/input/params.json")
        self.assertEqual(s._runs[0][0], ["/bin/sh", "-c", "echo hi"])
        self.assertEqual(s._uploads, [("/golem/input/params.json", b'{"a": 1}')])
        ctx.run("echo a b")
        self.assertEqual(ctx.commit()._runs[0][0], ["echo", "a", "b"])
        t = golem.Task(data=3)
        t.reject_result("no", retry=True)
        self.assertEqual((t._verdict, t.rejections), ("retry", ["no"]))
        t.accept_result(9)
        self.assertEqual((t._verdict, t.result), ("accepted", 9))


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""HWF's hub flow on offload: tasks of stages and artifacts, dispatched by
hardware, results per stage and command with what each stage tracked.

Written as an HWF user writes it (HWF.Task, HWF.Stage, HWF.Data,
HWF.Artifacts, a Hub, dispatch, get_result, get_hardware_pool); only the
import changes, and offload needs to know what image runs the commands.
The workload is the hello test program (internal/testimage/hello):

    OFFLOAD_HOME=B python3 examples/python/hwf.py --runtime wasm --image bafk...

It exits non-zero when a result is not what it expects.
"""

import argparse
import pathlib
import sys
import tempfile

from offload import hwf as HWF
from offload import NoProviderError


def check(cond: bool, what: str) -> None:
    if not cond:
        sys.exit("unexpected: " + what)


def main(image: str, runtime: str) -> None:
    tmp = pathlib.Path(tempfile.mkdtemp())
    (tmp / "image.raw").write_text("raw pixels")

    task1 = HWF.Task(
        HWF.Stage(
            name="setup",
            data=[HWF.Data(tmp / "image.raw", "in.raw")],
            cmd=["/hello cat /data/in.raw", "/hello write /work/log.txt setup-done"],
            track_time=True, track_ram=True,
            comment="read the input, write a log",
        ),
        HWF.Stage(
            name="run cool stuff",
            cmd="/hello alloc 16",
            track_time=True, track_ram=True, track_cpu=True, track_gpu=True,
            comment="allocate 16 MiB",
        ),
        HWF.Artifacts("log.txt"),
        hardware={"os": "any", "gpu": "any", "cpu": "any", "ram": "any"},
    )

    with HWF.Hub(ip_address="ws://localhost:3001", image=image, runtime=runtime) as hub:
        hw_pool = hub.get_hardware_pool()
        print("hardware pool:", hw_pool.get("os", "cpu"))
        check(len(hw_pool) >= 1, "an empty hardware pool")
        check(len(hub.get_hardware_pool(os="any", cpu="any")) == len(hw_pool), "'any' does not match all")
        check(hub.get_hardware_pool(gpu=8) == [], "a provider with 8 GPUs")

        id_test = []
        for hw in hw_pool.get("os"):  # one job per distinct operating system
            id_test.append(hub.dispatch(hardware=hw, task=task1))
        id_test.append(hub.dispatch(task=task1))

        results = hub.get_result(id_test, wait=True)
        check(sorted(r.id for r in results) == sorted(id_test), "a result per job")
        for result in results:
            print(f"job {result.id}: exit {result.exit_code} on {result.hardware.get('cpu_model')}")
            check(result.exit_code == 0, f"job failed: {result.error}")
            setup = result.stage("setup")
            check([c.cmd for c in setup.commands] == task1.stages[0].cmd, "setup's commands")
            check(setup.commands[0].stdout == "raw pixels", f"setup read {setup.commands[0].stdout!r}")
            check(setup.time() > 0 and setup.ram > 0 and setup.cpu is None, "setup's tracked measures")
            stuff = result.stage("run cool stuff")
            print(f"  run cool stuff: {stuff.time():.0f} ms, {stuff.ram / 2**20:.1f} MiB, cpu {stuff.cpu:.0f} ms, "
                  f"gpus {stuff.gpu}")
            check(stuff.ram >= 16 * 2**20, f"ram {stuff.ram} below the 16 MiB the stage allocated")
            check(stuff.cpu is not None and stuff.gpu == [], "run cool stuff's cpu and gpu")
            with open(result.artifacts("log.txt")) as f:
                check(f.read() == "setup-done", "the log artifact")

        # Without wait, only what is done.
        slow = hub.dispatch(task=HWF.Task(HWF.Stage(name="slow", cmd="/hello sleep 3s"), image=image, runtime=runtime))
        check(hub.get_result([slow], wait=False) == [], "a slow job reported done")
        [late] = hub.get_result([slow])
        check(late.stage("slow").exit_code == 0, "the slow job")

        # A stage that fails stops the rest; its command says why.
        bad = hub.dispatch(task=HWF.Task(HWF.Stage(name="bad", cmd=["/hello exit 3", "/hello echo never"]),
                                         HWF.Stage(name="after", cmd="/hello echo never")))
        [r] = hub.get_result([bad])
        check(r.exit_code == 3 and len(r.stage("bad").commands) == 1 and r.stage("after").commands == [],
              f"the failing job: {r.exit_code} {r.stages}")

        try:
            hub.dispatch(task=task1, hardware={"gpu": "H100"})
            sys.exit("dispatched to an H100 nobody has")
        except NoProviderError as e:
            print("no H100:", str(e)[:60] + "...")
    print("done")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default="offload-example/hello:1", help="image tag/CID, or module CID with --runtime wasm")
    p.add_argument("--runtime", default="docker", choices=["docker", "wasm"])
    a = p.parse_args()
    main(a.image, a.runtime or None)

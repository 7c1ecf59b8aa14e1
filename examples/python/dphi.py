#!/usr/bin/env python3
"""DPhi Space's EM API flow on offload: uplink into a pod's volume, load
and build images, run DPhi Pods on a node kind, read their status,
downlink what they wrote, clean up.

Written as a DPhi user writes it (the EM API client's functions, its
pod_name storage model, node="FPGA"/"GPU"/"MPU"); only the import changes.
It needs a `docker save` tarball of the hello test program's image
(offload-test/hello:latest) and a provider labelled fpga=...; a provider
that builds images (`offload node --provider --build`) runs image_build:

    OFFLOAD_HOME=B python3 examples/python/dphi.py --tar hello.tar

It exits non-zero when a result is not what it expects.
"""

import argparse
import datetime
import json
import pathlib
import sys
import tempfile
import time

from offload import dphi


def check(cond: bool, what: str) -> None:
    if not cond:
        sys.exit("unexpected: " + what)


def expect(exc: type, fn, *args, **kwargs) -> str:
    try:
        fn(*args, **kwargs)
    except exc as e:
        print(f"  {exc.__name__}: {str(e)[:100]}")
        return str(e)
    sys.exit(f"{fn.__name__}{args} did not raise {exc.__name__}")


def main(tar: str, fpga_provider: str) -> None:
    tmp = pathlib.Path(tempfile.mkdtemp())
    (tmp / "Dockerfile").write_text("FROM offload-test/hello:latest\nCOPY message.txt /message.txt\n")
    (tmp / "message.txt").write_text("if knowledge can create problems, it is not through ignorance that we can solve them\n")
    (tmp / "Broken.Dockerfile").write_text('FROM offload-test/hello:latest\nRUN ["/hello", "exit", "3"]\n')

    print("\n=== FILE LIST ===")
    print(json.dumps(dphi.files_list(), indent=4))

    print("\n=== UPLOAD FILES ===")
    print(dphi.uplink([tar, str(tmp / "Dockerfile"), str(tmp / "message.txt"), str(tmp / "Broken.Dockerfile")],
                      dest_path="echo-test"))
    listed = {f["path"] for f in dphi.files_list()["files"]}
    check({"echo-test/Dockerfile", "echo-test/message.txt", f"echo-test/{pathlib.Path(tar).name}"} <= listed,
          f"files after uplink: {listed}")

    print("\n=== LOAD DOCKER IMAGE ===")
    print(dphi.image_load(f"echo-test/{pathlib.Path(tar).name}", "offload-test/hello:latest"))
    expect(dphi.MissingImageError, dphi.image_load, f"echo-test/{pathlib.Path(tar).name}", "another/image:1")

    print("\n=== BUILD DOCKER IMAGE ===")
    print(dphi.image_build("./echo-test/Dockerfile", "echo-test", "./echo-test"))
    check({i["image"] for i in dphi.image_list()} == {"offload-test/hello:latest", "echo-test"},
          f"image_list: {dphi.image_list()}")
    expect(dphi.BadContextError, dphi.image_build, "Dockerfile", "nothing", "./no-such-folder")
    expect(dphi.BuildFailedError, dphi.image_build, "./echo-test/Broken.Dockerfile", "broken", "./echo-test")

    print("\n=== RUN DOCKER IMAGE ===")
    print(dphi.run("echo-test", max_duration=1, command="/hello", args=["cat", "/message.txt"]))
    status = dphi.pod_status(wait=True)
    print(json.dumps(status, indent=4))
    check(status["status"] == "Succeeded" and status["logs"].startswith("if knowledge"), "the echo-test pod")

    # A pod on the FPGA node writes into its own volume.
    print(dphi.run("offload-test/hello:latest", node="FPGA", max_duration=1, pod_name="fpga-pod",
                   command="/hello write /data/fpga-downlink.txt",
                   args=["written on the FPGA node"]))
    status = dphi.pod_status("fpga-pod", wait=True)
    check(status["status"] == "Succeeded", f"fpga-pod: {status}")
    check(not fpga_provider or status["provider"] == fpga_provider, f"fpga-pod ran on {status['provider']}")
    check([f["path"] for f in dphi.files_list(pod_name="fpga-pod")["files"]] == ["fpga-downlink.txt"],
          "fpga-pod's volume")
    check("fpga-downlink.txt" not in {f["path"] for f in dphi.files_list()["files"]}, "pods share a volume")

    # Scheduled: held until its time.
    when = (datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=2))) + datetime.timedelta(seconds=3))
    dphi.run("offload-test/hello:latest", max_duration=1, scheduled_time=when.isoformat(), pod_name="later",
             command="/hello write /data/time.txt", args=[when.isoformat()])
    check(dphi.pod_status("later")["status"] == "Pending", "a scheduled pod is not pending")
    status = dphi.pod_status("later", wait=True)
    started = datetime.datetime.fromisoformat(status["started_at"].replace("Z", "+00:00")[:26] + "+00:00")
    check(status["status"] == "Succeeded" and started >= when - datetime.timedelta(seconds=1),
          f"the scheduled pod started at {status['started_at']}, before {when}")

    print("\n=== DOWNLINK FILE ===")
    out = tmp / "downlink"
    got = dphi.downlink("fpga-downlink.txt", out, pod_name="fpga-pod")
    print(got)
    check(pathlib.Path(got["local_path"]).read_text() == "written on the FPGA node", "the downlinked file")
    dphi.downlink("time.txt", out, pod_name="later")

    print("\n=== ERRORS ===")
    expect(dphi.MissingFileError, dphi.downlink, "no-such-file.txt", out)
    expect(dphi.MissingFileError, dphi.uplink, [str(tmp / "no-such-file.txt")])
    expect(dphi.ProviderBusyError, dphi.run, "echo-test", node="GPU", max_duration=1)
    expect(dphi.MissingImageError, dphi.run, "never-built/image:1", max_duration=1, command="/hello echo", wait=True)
    expect(dphi.NamespaceNotFoundError, dphi.run, "echo-test", namespace="not-created")
    print(dphi.namespace_create("ground-station"))

    print("\n=== CLEANUP (DELETE FILES) ===")
    print(dphi.delete(f"echo-test/{pathlib.Path(tar).name}"))
    print(dphi.delete("/echo-test"))
    print(dphi.delete("fpga-downlink.txt", pod_name="fpga-pod"))
    check(dphi.files_list()["files"] == [] and dphi.files_list(pod_name="fpga-pod")["files"] == [],
          "files left after delete")
    expect(dphi.MissingFileError, dphi.delete, "echo-test")
    print("done")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tar", required=True, help="docker save tarball of offload-test/hello:latest")
    p.add_argument("--fpga-provider", default="", help="peer id of the provider labelled fpga=...")
    a = p.parse_args()
    main(a.tar, a.fpga_provider)

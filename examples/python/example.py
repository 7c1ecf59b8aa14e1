#!/usr/bin/env python3
"""offload from Python: offload tasks with a callback and join them
(MECAnywhere style), then uplink a directory, run a task on it and
downlink what it wrote (DPhi style).

It talks to the node in $OFFLOAD_HOME (or ~/.offload) through
sdk/python/offload.py, standard library only. The workload is the hello
program of internal/testimage (subcommands env, cat, write, ...), as a
Docker image tag or, with --runtime wasm, a module CID:

    OFFLOAD_HOME=B python3 examples/python/example.py --runtime wasm --image bafk...
"""

import argparse
import asyncio
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "sdk" / "python"))
import offload  # noqa: E402


async def main(image: str, runtime: str) -> None:
    c = offload.AsyncClient()
    info = await c.initiate_connection(timeout=10)
    print("connected to", info.get("id", "?")[:12] + "…")

    # 1. Offload three tasks, each with its own data and a callback; join.
    seen = {}

    def on_result(result: dict) -> None:
        # `data` text arrives in the task's environment as OFFLOAD_DATA.
        line = next((l for l in result["stdout"].splitlines() if l.startswith(offload.DATA_ENV + "=")), "")
        seen[result["task_id"]] = line
        print(f"callback {result['task_id']}: {result['state']} {line}")

    for i in range(1, 4):
        await c.offload_task(f"greet-{i}", image, f"hello {i}", on_result, runtime=runtime,
                             resource={"cpu": 0.5, "memory": "64m"}, command=["/hello", "env"])
    results = await c.join(task_timeout=60, join_timeout=120)
    states = sorted(r["state"] for r in results.values())
    print(f"joined {len(results)} tasks: {', '.join(states)}")
    if states != ["completed"] * 3 or seen.get("greet-2") != "OFFLOAD_DATA=hello 2":
        raise SystemExit(f"unexpected results: {seen}")

    with tempfile.TemporaryDirectory() as tmp:
        # 2. Uplink a directory, run a task that reads it.
        data = pathlib.Path(tmp, "data")
        data.mkdir()
        (data / "numbers.txt").write_text("1 2 3 5 8 13\n")
        [cid] = await c.uplink([data])
        print("uplink data/ ->", cid)
        res = await c.run(image, ["/hello", "cat", "/inputs/data/numbers.txt"], runtime=runtime,
                          inputs=[(cid, "/inputs/data")], timeout=30)
        print(f"run cat: {res['state']} {res['stdout'].strip()}")
        if res["state"] != "completed" or res["stdout"] != "1 2 3 5 8 13\n":
            raise SystemExit(f"unexpected run result: {res['state']} {res['stdout']!r} {res['error']}")

        # 3. A task writes to /outputs; downlink its outputs by CID.
        res = await c.run(image, ["/hello", "write", "/outputs/report.txt", "sum=32"], runtime=runtime, timeout=30)
        if res["state"] != "completed" or not res["outputs"]:
            raise SystemExit(f"unexpected write result: {res['state']} {res['error']}")
        out = await c.downlink(res["outputs"], pathlib.Path(tmp, "outputs"))
        report = (out / "report.txt").read_text()
        print(f"downlink {res['outputs']} -> report.txt: {report}")
        if report != "sum=32":
            raise SystemExit(f"unexpected report: {report!r}")

    await c.disconnect()
    print("done")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default="offload-example/hello:1", help="image tag/CID, or module CID with --runtime wasm")
    p.add_argument("--runtime", default="docker", choices=["docker", "wasm"])
    a = p.parse_args()
    asyncio.run(main(a.image, a.runtime))

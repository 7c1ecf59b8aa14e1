#!/usr/bin/env python3
"""MECAnywhere's SDK flow on offload: connect, offload tasks with a
callback, join, disconnect.

Written as a MECAnywhere user writes it (the SDK's module of coroutines and
its five-argument callback); only the import changes. The workload is the
hello test program (internal/testimage/hello) as an image or, with
--runtime wasm, a module CID:

    OFFLOAD_HOME=B python3 examples/python/mecanywhere.py --runtime wasm --image bafk...

It exits non-zero when a result is not what it expects.
"""

import argparse
import asyncio
import json
import sys

from offload import mecanywhere as meca

results = {}
errors = {}


def callback_on_receive(task_id, status, response, err, corr_id):
    if status == 1:
        results[task_id] = response
        print("Received result for task", task_id)
    else:
        errors[task_id] = err
        print(err, "for task:", task_id, "corr_id:", corr_id)


async def main(image: str, runtime: str) -> None:
    try:
        await meca.initiate_connection(timeout=10)
    except Exception:
        await meca.disconnect()
        raise

    for i in range(3):
        await meca.offload_task(
            str(i), image, json.dumps({"name": f"meca dev {i}"}), callback=callback_on_receive,
            resource={"cpu": 1, "memory": 64}, runtime=runtime, command=["/hello", "env"])
    # Input too big for the environment travels as a file.
    big = "x" * 40_000
    await meca.offload_task("big", image, big, callback_on_receive, runtime=runtime,
                            command=["/hello", "cat", "/inputs/data/data" if runtime == "wasm" else "/inputs/data"])
    await meca.join(task_timeout=60, join_timeout=120)
    # A task over its timeout is canceled by join; its callback says so.
    await meca.offload_task("slow", image, "", callback_on_receive, runtime=runtime, command=["/hello", "sleep", "60s"])
    await meca.join(task_timeout=2, join_timeout=60)
    await meca.disconnect()

    print("All results received:", sorted(results))
    for i in range(3):
        want = 'OFFLOAD_DATA={"name": "meca dev %d"}' % i
        if want not in results.get(str(i), "").splitlines():
            sys.exit(f"task {i}: {want!r} not in {results.get(str(i))!r}")
    if results.get("big") != big:
        sys.exit(f"task big: got {len(results.get('big') or '')} bytes back, want {len(big)}")
    if "slow" not in errors or "cancel" not in str(errors["slow"]):
        sys.exit(f"task slow: want a canceled callback, got {errors.get('slow')!r}")
    print("done")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default="offload-example/hello:1", help="image tag/CID, or module CID with --runtime wasm")
    p.add_argument("--runtime", default="docker", choices=["docker", "wasm"])
    a = p.parse_args()
    asyncio.run(main(a.image, a.runtime))

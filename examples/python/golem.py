#!/usr/bin/env python3
"""Golem's task API on offload: a job split into pieces, each verified by
the requestor, a rejected piece rerun on another provider, then an abort.

Written as a yapapi user writes it (Golem, Task, WorkContext, vm.repo,
execute_tasks, a worker that yields scripts and accepts or rejects each
result); only the import changes. The workload is the hello test program
(internal/testimage/hello) as an image or a WASM module CID:

    OFFLOAD_HOME=B python3 examples/python/golem.py --image bafy... --runtime wasm \
        --distrust 12D3KooW...

--distrust names a provider whose results the worker rejects (a requestor
that caught it cheating): its pieces run again elsewhere. It exits
non-zero when a result is not what it expects.
"""

import argparse
import asyncio
import sys
from datetime import timedelta
from typing import AsyncIterable

from offload.golem import Golem, Task, WorkContext, vm


async def main(image: str, runtime: str, distrust: str) -> None:
    package = await vm.repo(image_hash=image, runtime=runtime, min_mem_gib=0.1, min_cpu_threads=1)
    rejected = []

    async def worker(context: WorkContext, tasks: AsyncIterable[Task]):
        async for task in tasks:
            script = context.new_script()
            # Each piece squares its number; hello echoes what it is given.
            future_result = script.run("/hello", "echo", f"square {task.data} = {task.data ** 2}")
            yield script
            result = await future_result
            expected = f"square {task.data} = {task.data ** 2}"
            if context.provider_id == distrust:
                rejected.append((task.data, context.provider_id))
                task.reject_result(f"provider {context.provider_id[-8:]} is not trusted", retry=True)
            elif result.stdout.strip() != expected:
                task.reject_result(f"wrong answer {result.stdout!r}", retry=True)
            else:
                task.accept_result(result=result.stdout.strip())

    pieces = [Task(data=n) for n in range(1, 6)]
    async with Golem(budget=1.0, subnet_tag="offload") as golem:
        done = {}
        async for completed in golem.execute_tasks(worker, pieces, payload=package, max_workers=5,
                                                   timeout=timedelta(minutes=3)):
            done[completed.data] = completed
            print(f"piece {completed.data}: {completed.result} (providers {[p[-8:] for p in completed.attempts]})")
        if sorted(done) != [1, 2, 3, 4, 5] or golem.failed:
            sys.exit(f"not every piece completed: done {sorted(done)}, failed {[t.data for t in golem.failed]}")
        for n, t in done.items():
            if t.result != f"square {n} = {n * n}" or t.provider_id == distrust:
                sys.exit(f"piece {n}: {t.result!r} from {t.provider_id}")
        if distrust and not rejected:
            sys.exit(f"the distrusted provider {distrust} ran no piece: nothing was rerun")
        for n, p in rejected:
            if done[n].attempts[0] != p or done[n].attempts[-1] == p:
                sys.exit(f"piece {n} was not rerun elsewhere: {done[n].attempts}")
        print(f"rejected {len(rejected)} results of the distrusted provider; each piece reran elsewhere")

        # Abort: a piece that would take a minute is canceled on its provider
        # when the computation times out.
        slow = []

        async def sleeper(context: WorkContext, tasks: AsyncIterable[Task]):
            async for task in tasks:
                script = context.new_script()
                script.run("/hello", "sleep", "60s")
                yield script
                task.accept_result()

        slow_piece = Task(data="slow")
        async for completed in golem.execute_tasks(sleeper, [slow_piece], payload=package,
                                                   timeout=timedelta(seconds=3)):
            slow.append(completed)
        if slow:
            sys.exit("the slow piece completed before the abort")
        state = (await golem.client.wait(slow_piece.id, timeout=30))["state"]
        if state != "canceled":
            sys.exit(f"the aborted piece is {state} on the node, want canceled")
        print("aborted: the slow piece was canceled on its provider")
    print("done")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default="offload-example/hello:1", help="image tag/CID, or module CID with --runtime wasm")
    p.add_argument("--runtime", default="docker", choices=["docker", "wasm"])
    p.add_argument("--distrust", default="", help="a provider whose results are rejected")
    a = p.parse_args()
    asyncio.run(main(a.image, a.runtime, a.distrust))

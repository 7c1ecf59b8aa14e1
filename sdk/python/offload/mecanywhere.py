"""MECAnywhere's SDK calls on offload.

MECAnywhere's Python SDK is a module of coroutines: connect to the local
app, offload tasks with a callback, join, disconnect. Here the local app is
the offload node of ``$OFFLOAD_HOME`` (or ``home=``), and the calls keep
their names and arguments::

    from offload import mecanywhere as meca

    def callback_on_receive(task_id, status, response, err, corr_id):
        print(task_id, response if status == 1 else err)

    async def main():
        await meca.initiate_connection(timeout=10)
        for i in range(3):
            await meca.offload_task(str(i), "sampleserver:latest", {"name": f"meca {i}"},
                                    callback_on_receive, resource={"cpu": 1, "memory": 256})
        await meca.join(task_timeout=60, join_timeout=300)
        await meca.disconnect()

What maps to what:

- ``container_ref`` is the task's image: a Docker reference the providers
  hold, an image CID (``offload image push``), or with ``runtime="wasm"`` a
  module CID.
- ``data`` reaches the task as ``$OFFLOAD_DATA`` (text up to 16 KiB, JSON
  for anything not ``str``) or as a file at ``/inputs/data`` (see the
  package docs).
- ``resource``: ``cpu`` (cores), ``memory`` (MB, MECAnywhere's unit, or
  "512m"), ``gpu``; ``use_gpu``/``gpu_count`` as in MECAnywhere's SDK.
- The callback is called as MECAnywhere's SDK calls it, by how many
  arguments it takes: five, ``(task_id, status, response, err, corr_id)``
  with status 1 when the task completed (0 otherwise), response its
  standard output, err why it failed, corr_id the node's task id; two,
  ``(task_id, response)``; one, the whole result dict (``task_id`` set to
  the caller's label). It may be a coroutine function.
- ``join(task_timeout, join_timeout)`` cancels a task still running
  ``task_timeout`` seconds after the call, and raises TaskTimeoutError (an
  asyncio.TimeoutError) when all are not done after ``join_timeout``; it
  returns the results by task id.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional

from ._http import PathLike
from .aio import AsyncClient
from .client import Command, Task

__all__ = ["initiate_connection", "offload_task", "join", "disconnect", "client", "use"]

_client: Optional[AsyncClient] = None


def use(c: AsyncClient) -> None:
    """Makes the module's calls go through c (a node other than
    $OFFLOAD_HOME's, a shared client)."""
    global _client
    _client = c


def client() -> AsyncClient:
    """The AsyncClient the module's calls go through."""
    global _client
    if _client is None:
        _client = AsyncClient()
    return _client


async def initiate_connection(timeout: Optional[float] = None, home: Optional[PathLike] = None) -> Dict[str, Any]:
    """Connects to the local node (``home``, else $OFFLOAD_HOME or
    ~/.offload), waiting up to timeout seconds for one that is starting;
    returns its identity. NoNodeError when none answers."""
    if home is not None:
        use(AsyncClient(home=home))
    return await client().initiate_connection(timeout=timeout)


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 5
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in params)


def _adapt(callback: Optional[Callable[..., Any]]) -> Optional[Callable[[Task], Any]]:
    if callback is None:
        return None
    n = _arity(callback)

    def call(result: Task) -> Any:
        if n >= 5:
            ok = result.get("state") == "completed"
            return callback(result["task_id"], 1 if ok else 0, result.get("stdout", ""),
                            None if ok else (result.get("error") or result.get("state")), result.get("id"))
        if n == 2:
            return callback(result["task_id"], result.get("stdout", ""))
        return callback(result)
    return call


async def offload_task(task_id: str, container_ref: str, data: Any, callback: Optional[Callable[..., Any]] = None,
                       resource: Optional[Mapping[str, Any]] = None, runtime: Optional[str] = None,
                       use_gpu: bool = False, gpu_count: int = 0, command: Command = None,
                       **spec_fields: Any) -> str:
    """Offloads one task and returns the node's id for it (the callback's
    corr_id); the callback runs when it ends. task_id is the caller's label,
    unique until join."""
    res = dict(resource or {})
    if use_gpu or gpu_count:
        res.setdefault("gpu", max(1, int(gpu_count)))
    return await client().offload_task(task_id, container_ref, data, _adapt(callback), res or None, runtime,
                                       command, **spec_fields)


async def join(task_timeout: Optional[float] = None, join_timeout: Optional[float] = None) -> Dict[str, Task]:
    """Waits for every offloaded task and its callback; returns the results
    by task id."""
    return await client().join(task_timeout=task_timeout, join_timeout=join_timeout)


async def disconnect() -> None:
    """Stops following offloaded tasks (they keep running) and forgets
    them."""
    if _client is not None:
        await _client.disconnect()

"""The asyncio client: the calls of :class:`offload.Client` as coroutines.

HTTP goes through the standard library's blocking ``http.client``, so each
call runs in a thread of its own (not the loop's default executor, which a
few long waits would fill): the event loop never blocks, one loop follows
many tasks, and canceling a waiting coroutine closes its stream, which ends
its thread.
"""

from __future__ import annotations

import asyncio
import inspect
import pathlib
import threading
from typing import (Any, AsyncIterator, Awaitable, Callable, Dict, Iterable, Iterator, List, Mapping, Optional,
                    TypeVar, Union)

from ._http import PathLike, Stream
from .client import TERMINAL_STATES, Client, Command, Task
from .errors import ConflictError, NoNodeError, TaskTimeoutError

__all__ = ["AsyncClient"]

T = TypeVar("T")
Callback = Callable[[Task], Union[Any, Awaitable[Any]]]


async def _in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs a blocking call in a new daemon thread and awaits its result."""
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[T]" = loop.create_future()

    def settle(ok: bool, v: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(v)
        else:
            fut.set_exception(v)

    def run() -> None:
        try:
            r = fn(*args, **kwargs)
            ok, v = True, r
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            ok, v = False, e
        try:
            loop.call_soon_threadsafe(settle, ok, v)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    threading.Thread(target=run, name=f"offload-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return await fut


async def _stream_items(open_stream: Callable[[], Stream], items: Callable[[Stream], Iterator[T]]) -> AsyncIterator[T]:
    """Opens a stream in a thread and yields what items() reads from it;
    leaving the iteration (or canceling it) closes the stream."""
    loop = asyncio.get_running_loop()
    q: "asyncio.Queue[tuple]" = asyncio.Queue()
    state: Dict[str, Any] = {"stream": None, "stop": False}

    def post(kind: str, v: Any) -> None:
        try:
            loop.call_soon_threadsafe(q.put_nowait, (kind, v))
        except RuntimeError:
            pass

    def run() -> None:
        s = None
        try:
            s = open_stream()
            state["stream"] = s
            if state["stop"]:
                return
            for item in items(s):
                post("item", item)
            post("end", None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            post("err", e)
        finally:
            if s is not None:
                s.close()

    threading.Thread(target=run, name="offload-stream", daemon=True).start()
    try:
        while True:
            kind, v = await q.get()
            if kind == "item":
                yield v
            elif kind == "end":
                return
            else:
                raise v
    finally:
        state["stop"] = True
        if state["stream"] is not None:
            state["stream"].close()


async def _maybe_await(r: Any) -> None:
    if inspect.isawaitable(r):
        await r


class AsyncClient:
    """The calls of :class:`offload.Client` as coroutines, for asyncio.

    The arguments are Client's (``home``, ``url``, ``token``,
    ``fingerprint``, ``timeout``); ``client.sync`` is the blocking Client
    underneath, sharing its node and labels. MECAnywhere's calls
    (initiate_connection, offload_task, join, disconnect) keep their async
    form here, callbacks may be sync or async::

        c = offload.AsyncClient()
        await c.initiate_connection(timeout=10)
        res = await c.run("hello:1", ["echo", "hi"])
    """

    def __init__(self, home: Optional[PathLike] = None, url: Optional[str] = None, token: Optional[str] = None,
                 fingerprint: Optional[str] = None, timeout: Optional[float] = 300.0):
        self.sync = Client(home, url, token, fingerprint, timeout)
        self._watchers: Dict[str, "asyncio.Task[Task]"] = {}
        self._results: Dict[str, Task] = {}

    def __repr__(self) -> str:  # never shows the token
        return "Async" + repr(self.sync)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()

    @property
    def home(self) -> pathlib.Path:
        """The node's home directory."""
        return self.sync.home

    @property
    def url(self) -> str:
        """The node's API base URL."""
        return self.sync.url

    # --- connection ---------------------------------------------------------

    async def initiate_connection(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Checks that the node answers and returns its identity; with a
        timeout, waits that long for a node that is still starting."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        pause = 0.05
        while True:
            try:
                return await self.id()
            except NoNodeError:
                if deadline is None or loop.time() >= deadline:
                    raise
                self.sync._t.forget()
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, 1.0)

    async def id(self) -> Dict[str, Any]:
        """The node's peer id and addresses."""
        return await _in_thread(self.sync.id)

    async def peers(self) -> List[Dict[str, Any]]:
        """Connected peers."""
        return await _in_thread(self.sync.peers)

    async def disconnect(self) -> None:
        """Stops following tasks offloaded with offload_task (they keep
        running on the swarm; their callbacks will not be called) and
        forgets them."""
        for w in self._watchers.values():
            w.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        self._watchers.clear()
        self._results.clear()
        self.sync._ids.clear()

    # --- tasks --------------------------------------------------------------

    async def task_spec(self, image: str, command: Command = None, data: Any = None,
                        resource: Optional[Mapping[str, Any]] = None, runtime: Optional[str] = None,
                        env: Optional[Mapping[str, Any]] = None, inputs: Optional[Iterable[Any]] = None,
                        timeout: Optional[float] = None, **spec_fields: Any) -> Task:
        """Builds a task spec; see Client.task_spec (data may be uploaded)."""
        return await _in_thread(self.sync.task_spec, image, command, data, resource, runtime, env, inputs,
                                timeout, **spec_fields)

    async def submit(self, spec: Mapping[str, Any]) -> Task:
        """Submits a task spec and returns the stored task."""
        return await _in_thread(self.sync.submit, spec)

    async def status(self, task_id: str) -> Task:
        """A task's status (a node id or an offload_task label)."""
        return await _in_thread(self.sync.status, task_id)

    async def list(self, state: Union[str, Iterable[str], None] = None) -> List[Task]:
        """The node's tasks, newest first, optionally by state."""
        return await _in_thread(self.sync.list, state)

    async def cancel(self, task_id: str) -> Task:
        """Cancels a task (ConflictError when it already ended)."""
        return await _in_thread(self.sync.cancel, task_id)

    async def watch(self, task_id: str, on_change: Optional[Callback] = None,
                    timeout: Optional[float] = None) -> Task:
        """Follows a task through the node's server-sent events, calling
        on_change (sync or async) with every snapshot, and returns the
        terminal one; TaskTimeoutError after timeout seconds."""
        async def follow() -> Task:
            async for snap in _stream_items(lambda: self.sync._open_events(task_id, timeout=None),
                                            self.sync._snapshots):
                if on_change is not None:
                    await _maybe_await(on_change(snap))
                if snap.get("state") in TERMINAL_STATES:
                    return snap
            raise NoNodeError("the event stream ended before the task finished (did the node stop?)")
        return await self._bounded(follow(), task_id, timeout)

    async def wait(self, task_id: str, timeout: Optional[float] = None, check: bool = False) -> Task:
        """Waits until a task ends and returns its status; TaskTimeoutError
        after timeout seconds (the task goes on); with check, a task that
        did not complete raises TaskFailedError."""
        async def final() -> Task:
            async for snap in _stream_items(lambda: self.sync._open_events(task_id, final=True, timeout=None),
                                            self.sync._snapshots):
                if snap.get("state") in TERMINAL_STATES:
                    return self.sync._checked(snap) if check else snap
            raise NoNodeError("the event stream ended before the task finished (did the node stop?)")
        return await self._bounded(final(), task_id, timeout)

    @staticmethod
    async def _bounded(aw: Awaitable[T], task_id: str, timeout: Optional[float]) -> T:
        try:
            return await asyncio.wait_for(aw, timeout)
        except asyncio.TimeoutError:
            raise TaskTimeoutError(f"task {task_id} did not end within {timeout} s", task_id) from None

    async def logs(self, task_id: str, follow: bool = False, since: Optional[str] = None) -> AsyncIterator[Dict[str, Any]]:
        """Yields a task's output as it is written (see Client.logs)::

            async for chunk in client.logs(task_id, follow=True):
                print(chunk["text"], end="")
        """
        async for chunk in _stream_items(lambda: self.sync._open_logs(task_id, follow, since), self.sync._log_chunks):
            yield chunk

    async def run(self, image: str, command: Command = None, data: Any = None,
                  resource: Optional[Mapping[str, Any]] = None, runtime: Optional[str] = None,
                  env: Optional[Mapping[str, Any]] = None, inputs: Optional[Iterable[Any]] = None,
                  timeout: Optional[float] = None, check: bool = False, wait_timeout: Optional[float] = None,
                  **spec_fields: Any) -> Task:
        """Submits a task and waits for it (see Client.run)."""
        spec = await self.task_spec(image, command, data, resource, runtime, env, inputs, timeout, **spec_fields)
        task = await self.submit(spec)
        try:
            return await self.wait(task["id"], timeout=wait_timeout, check=check)
        except (TaskTimeoutError, asyncio.CancelledError):
            await self._cancel_quietly(task["id"])
            raise

    async def _cancel_quietly(self, task_id: str) -> None:
        try:
            await self.cancel(task_id)
        except ConflictError:
            pass

    async def exec(self, task_id: str, command: Command) -> Dict[str, Any]:
        """Runs a command inside a running service task (see Client.exec)."""
        return await _in_thread(self.sync.exec, task_id, command)

    # --- MECAnywhere --------------------------------------------------------

    async def offload_task(self, task_id: str, container_ref: str, data: Any, callback: Optional[Callback] = None,
                           resource: Optional[Mapping[str, Any]] = None, runtime: Optional[str] = None,
                           command: Command = None, **spec_fields: Any) -> str:
        """Submits a task and returns the node's id for it; callback (sync
        or async) receives the result dict, with ``task_id`` set to the
        caller's label, when the task ends. Wait for all with join."""
        if task_id in self.sync._ids:
            raise ValueError(f"task_id {task_id!r} is already offloaded by this client")
        self.sync._ids[task_id] = ""
        try:
            spec = await self.task_spec(container_ref, command, data, resource, runtime, **spec_fields)
            task = await self.submit(spec)
        except BaseException:
            self.sync._ids.pop(task_id, None)
            raise
        self.sync._ids[task_id] = task["id"]

        async def follow() -> Task:
            result = {**await self.wait(task["id"]), "task_id": task_id}
            self._results[task_id] = result
            if callback is not None:
                await _maybe_await(callback(result))
            return result

        self._watchers[task_id] = asyncio.ensure_future(follow())
        return task["id"]

    async def join(self, task_timeout: Optional[float] = None, join_timeout: Optional[float] = None) -> Dict[str, Task]:
        """Waits for every task offloaded with offload_task (callbacks
        included) and returns their results by label. A task not ended
        within task_timeout seconds (from this call) is canceled; its
        callback gets the canceled status. join_timeout bounds the whole
        wait: tasks still running are left running and TaskTimeoutError
        (an asyncio.TimeoutError) is raised."""
        async def one(label: str, w: "asyncio.Task[Task]") -> None:
            try:
                await asyncio.wait_for(asyncio.shield(w), task_timeout)
            except asyncio.TimeoutError:
                await self._cancel_quietly(self.sync._ids[label])
                await w

        watchers = dict(self._watchers)
        try:
            await asyncio.wait_for(asyncio.gather(*(one(k, w) for k, w in watchers.items())), join_timeout)
        except asyncio.TimeoutError:
            left = sum(not w.done() for w in watchers.values())
            raise TaskTimeoutError(f"join: {left} tasks still running after {join_timeout} s") from None
        for k in watchers:
            self._watchers.pop(k, None)
        return {k: self._results[k] for k in watchers if k in self._results}

    # --- content ------------------------------------------------------------

    async def uplink(self, paths: Union[PathLike, Iterable[PathLike]], cid_version: int = 1,
                     public: bool = False, temporary: bool = False) -> List[str]:
        """Adds files and directories as content; returns their CIDs (see
        Client.uplink)."""
        return await _in_thread(self.sync.uplink, paths, cid_version, public, temporary)

    async def add(self, path: PathLike, public: bool = False, cid_version: int = 1, temporary: bool = False) -> str:
        """Adds one file or directory; returns its CID."""
        return await _in_thread(self.sync.add, path, public, cid_version, temporary)

    async def add_bytes(self, data: bytes, name: str = "data", public: bool = False, cid_version: int = 1,
                        temporary: bool = False) -> str:
        """Adds bytes as one file; returns its CID."""
        return await _in_thread(self.sync.add_bytes, data, name, public, cid_version, temporary)

    async def publish(self, cid: str) -> None:
        """Publishes content the node holds."""
        await _in_thread(self.sync.publish, cid)

    async def pins(self) -> List[Dict[str, Any]]:
        """The node's pinned content."""
        return await _in_thread(self.sync.pins)

    async def unpin(self, cid: str) -> None:
        """Unpins content."""
        await _in_thread(self.sync.unpin, cid)

    async def cat(self, cid: str) -> bytes:
        """One file's bytes."""
        return await _in_thread(self.sync.cat, cid)

    async def downlink(self, cid: str, dest: PathLike) -> pathlib.Path:
        """Writes content to dest (see Client.downlink)."""
        return await _in_thread(self.sync.downlink, cid, dest)

    async def results(self, task_id: str, dest: PathLike) -> pathlib.Path:
        """Writes a task's outputs to dest on the node's machine."""
        return await _in_thread(self.sync.results, task_id, dest)

    async def push_image(self, ref: str, public: bool = False) -> str:
        """Adds a local Docker image as content; returns its CID."""
        return await _in_thread(self.sync.push_image, ref, public)

    async def build_image(self, context: PathLike, dockerfile: str = "Dockerfile", tag: Optional[str] = None,
                          timeout: Optional[float] = None, memory: Union[int, str, None] = None,
                          build_args: Optional[Mapping[str, Any]] = None, network: bool = False,
                          labels: Optional[Mapping[str, str]] = None) -> Task:
        """Starts building an image on a provider (see Client.build_image)."""
        return await _in_thread(self.sync.build_image, context, dockerfile, tag, timeout, memory, build_args,
                                network, labels)

    # --- services, tunnels, volumes -----------------------------------------

    async def open_tunnel(self, task_id: str, port: int, local: Optional[str] = None) -> Dict[str, Any]:
        """Forwards a loopback address to a port of a running service."""
        return await _in_thread(self.sync.open_tunnel, task_id, port, local)

    async def close_tunnel(self, tunnel_id: str) -> Dict[str, Any]:
        """Closes a tunnel."""
        return await _in_thread(self.sync.close_tunnel, tunnel_id)

    async def tunnels(self) -> List[Dict[str, Any]]:
        """The open tunnels."""
        return await _in_thread(self.sync.tunnels)

    async def volumes(self) -> List[Dict[str, Any]]:
        """The requestor's portable volumes."""
        return await _in_thread(self.sync.volumes)

    async def remove_volume(self, name: str) -> Dict[str, Any]:
        """Forgets a volume and releases its content."""
        return await _in_thread(self.sync.remove_volume, name)

    # --- swarm --------------------------------------------------------------

    async def pool(self, **filters: Any) -> List[Dict[str, Any]]:
        """The providers the node knows that match filters (see
        Client.pool)."""
        return await _in_thread(self.sync.pool, **filters)

    async def ledger(self) -> Dict[str, Any]:
        """Credits earned and spent per peer."""
        return await _in_thread(self.sync.ledger)


"""Golem's task API (yapapi) on offload: work split into tasks, a worker
that scripts each one and verifies its result, rejected pieces rerun on
another provider.

Code written for yapapi's ``Golem.execute_tasks`` runs with its imports
changed::

    from offload.golem import Golem, Task, WorkContext, vm

    async def worker(context: WorkContext, tasks):
        async for task in tasks:
            script = context.new_script()
            future = script.run("/hello", "echo", str(task.data * 2))
            yield script
            result = await future
            if result.stdout.strip() == str(task.data * 2):
                task.accept_result(result=result.stdout.strip())
            else:
                task.reject_result("wrong answer", retry=True)

    async with Golem(budget=1.0) as golem:
        package = await vm.repo(image_hash="bafy...")
        async for completed in golem.execute_tasks(worker, [Task(data=i) for i in range(10)],
                                                   payload=package, max_workers=4):
            print(completed.data, completed.result)

What maps to what:

- ``vm.repo(image_hash=...)`` is the image the providers run: an image or
  module CID, or a reference providers hold (``runtime="wasm"`` for a
  module); ``min_mem_gib`` and ``min_cpu_threads`` become the task's
  resources. ``budget`` and ``subnet_tag`` are accepted; offload prices
  are per CPU-second (``max_price=`` caps them).
- A worker gets one WorkContext per attempt of one task (yapapi reuses a
  context for several tasks on one provider; here each attempt is one
  offload task, so a retry can go to another provider). Each yielded
  script runs as one offload task: ``run`` commands become its stages (one
  sandbox, in order), ``upload_file``/``upload_bytes``/``upload_json`` are
  mounted read-only at their destination (files of one directory share a
  mount), ``download_file``/``download_bytes``/``download_json`` read from
  the task's outputs: their source must be under ``/outputs`` (or
  ``/work``), the sandbox's writable places. The older
  ``context.run(...)``, ``send_file``, ``commit()`` style works too: the
  value sent back at the yield is a future of the commands' results.
  ``context.provider_id`` names the provider once the script ran.
- ``task.accept_result(result)`` accepts a piece: execute_tasks yields it.
  ``task.reject_result(reason, retry=True)`` sends it to another provider:
  the piece is submitted again with every provider that failed it
  excluded, up to ``max_retries`` times; without retry it is dropped (it
  is in ``golem.failed``). A command that fails raises
  CommandExecutionError in the worker at its yield; uncaught, the piece is
  retried elsewhere as a rejection is. A task the worker neither accepts
  nor rejects is retried too.
- Abort: ``await golem.stop()``, leaving ``async with Golem``, closing the
  ``execute_tasks`` iterator, or its ``timeout`` passing cancels every
  piece still running on its provider.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import pathlib
import shlex
import shutil
import tempfile
from typing import (Any, AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Dict, Iterable, List, Optional, Tuple,
                    Union)

from ._http import PathLike
from .aio import AsyncClient
from .errors import NoProviderError, OffloadError

__all__ = ["Golem", "Task", "WorkContext", "Script", "CommandResult", "CommandExecutionError", "Payload", "vm"]

log = logging.getLogger("offload.golem")


class CommandExecutionError(Exception):
    """A command of a script failed on the provider (yapapi's name);
    ``command``, ``message`` (its stderr or the task's error) and
    ``stderr``."""

    def __init__(self, command: str, message: Optional[str] = None, stderr: Optional[str] = None):
        super().__init__(f"command {command!r} failed: {message}")
        self.command = command
        self.message = message
        self.stderr = stderr


class Payload:
    """What providers run: ``image`` (a CID or reference), ``runtime``
    ("docker" or "wasm") and the resources each task asks."""

    def __init__(self, image: str, runtime: Optional[str] = None, min_mem_gib: float = 0.0,
                 min_storage_gib: float = 0.0, min_cpu_threads: int = 0):
        self.image = image
        self.runtime = runtime
        self.min_mem_gib = min_mem_gib
        self.min_storage_gib = min_storage_gib
        self.min_cpu_threads = min_cpu_threads

    def resources(self) -> Dict[str, Any]:
        r: Dict[str, Any] = {}
        if self.min_mem_gib:
            r["memory_bytes"] = int(self.min_mem_gib * (1 << 30))
        if self.min_cpu_threads:
            r["cpus"] = float(self.min_cpu_threads)
        return r

    def __repr__(self) -> str:
        return f"Payload(image={self.image!r}, runtime={self.runtime!r})"


class _VM:
    """yapapi.payload.vm: ``await vm.repo(image_hash=...)``."""

    @staticmethod
    async def repo(image_hash: Optional[str] = None, image_url: Optional[str] = None, min_mem_gib: float = 0.5,
                   min_storage_gib: float = 2.0, min_cpu_threads: int = 1, capabilities: Any = None,
                   runtime: Optional[str] = None, image: Optional[str] = None) -> Payload:
        ref = image or image_hash or image_url
        if not ref:
            raise ValueError("vm.repo needs image_hash (an image or module CID, or a reference providers hold)")
        return Payload(ref, runtime, min_mem_gib, min_storage_gib, min_cpu_threads)


vm = _VM()


class CommandResult:
    """What one ``run`` command did (yapapi's CommandExecuted): command,
    stdout, stderr, exit_code, success, usage (wall_ms, cpu_ms,
    max_rss_bytes)."""

    def __init__(self, command: str, raw: Optional[Dict[str, Any]] = None, error: str = ""):
        raw = raw or {}
        self.command = command
        self.stdout: str = raw.get("stdout", "")
        self.stderr: str = raw.get("stderr", "") or error
        self.exit_code: Optional[int] = raw.get("exit_code") if raw else None
        self.success = bool(raw) and raw.get("exit_code") == 0 and not raw.get("error")
        self.usage: Dict[str, Any] = raw.get("usage") or {}

    def __repr__(self) -> str:
        return f"CommandResult({self.command!r}, exit_code={self.exit_code}, success={self.success})"


class Script:
    """A batch of commands run as one offload task (yapapi's Script)."""

    def __init__(self, context: "WorkContext"):
        self._ctx = context
        self._runs: List[Tuple[List[str], "asyncio.Future[CommandResult]"]] = []
        self._uploads: List[Tuple[str, bytes]] = []
        self._downloads: List[Tuple[str, Callable[[str], Any]]] = []
        self._env: Dict[str, str] = {}

    def run(self, cmd: str, *args: Any, env: Optional[Dict[str, str]] = None) -> "asyncio.Future[CommandResult]":
        """Adds a command (``run("/bin/sh", "-c", "date")``; one string
        with no args is split like a shell) and returns a future of its
        CommandResult."""
        argv = [cmd, *map(str, args)] if args else shlex.split(cmd)
        fut: "asyncio.Future[CommandResult]" = asyncio.get_running_loop().create_future()
        self._runs.append((argv, fut))
        if env:
            self._env.update({str(k): str(v) for k, v in env.items()})
        return fut

    def upload_file(self, src_path: PathLike, dst_path: str) -> None:
        """Places a local file at dst_path (read-only) in the task."""
        self._uploads.append((dst_path, pathlib.Path(src_path).read_bytes()))

    def upload_bytes(self, data: bytes, dst_path: str) -> None:
        """Places bytes at dst_path in the task."""
        self._uploads.append((dst_path, bytes(data)))

    def upload_json(self, data: Any, dst_path: str) -> None:
        """Places data, JSON-encoded, at dst_path in the task."""
        self._uploads.append((dst_path, json.dumps(data).encode()))

    def download_file(self, src_path: str, dst_path: PathLike) -> None:
        """Copies the task's output file src_path (under /outputs or /work)
        to the local dst_path after the run."""
        def save(local: str) -> None:
            pathlib.Path(dst_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, dst_path)
        self._downloads.append((src_path, save))

    def download_bytes(self, src_path: str, on_download: Callable[[bytes], Any], limit: Optional[int] = None) -> None:
        """Calls on_download (sync or async) with the output file's bytes."""
        self._downloads.append((src_path, lambda local: on_download(pathlib.Path(local).read_bytes()[:limit])))

    def download_json(self, src_path: str, on_download: Callable[[Any], Any], limit: Optional[int] = None) -> None:
        """Calls on_download with the output file decoded as JSON."""
        self._downloads.append((src_path, lambda local: on_download(json.loads(pathlib.Path(local).read_bytes()[:limit]))))

    # yapapi's older names
    send_file = upload_file
    send_bytes = upload_bytes
    send_json = upload_json


class Task:
    """One piece of work: ``data`` in, ``result`` out once accepted
    (yapapi's Task). ``attempts`` lists the providers that ran it, in
    order; ``id`` is the node's id of its latest attempt."""

    def __init__(self, data: Any = None):
        self.data = data
        self.result: Any = None
        self.id: Optional[str] = None
        self.attempts: List[str] = []
        self.rejections: List[str] = []
        self._verdict: Optional[str] = None  # "accepted", "rejected", "retry"
        self.provider_id: Optional[str] = None

    def accept_result(self, result: Any = None) -> None:
        """Accepts the piece with its result."""
        self.result = result
        self._verdict = "accepted"

    def reject_result(self, reason: Optional[str] = None, retry: bool = False) -> None:
        """Rejects the piece; with retry it runs again on another provider."""
        self.rejections.append(reason or "rejected")
        self._verdict = "retry" if retry else "rejected"

    @property
    def running_time(self) -> Optional[_dt.timedelta]:
        return None

    def __repr__(self) -> str:
        return f"Task(data={self.data!r}, result={self.result!r})"


class WorkContext:
    """The worker's handle on one attempt of one task (yapapi's
    WorkContext): ``new_script()``, the older ``run``/``send_*``/
    ``download_file``/``commit()``, and ``provider_id``/``provider_name``
    once a script ran."""

    def __init__(self, golem: "Golem", payload: Payload, exclude: List[str], task: Optional[Task] = None):
        self._golem = golem
        self._task = task
        self._payload = payload
        self._exclude = exclude
        self._batch: Optional[Script] = None
        self.provider_id: Optional[str] = None
        self.task_ids: List[str] = []

    @property
    def provider_name(self) -> Optional[str]:
        return self.provider_id

    @property
    def id(self) -> str:
        return self.task_ids[-1] if self.task_ids else ""

    def new_script(self) -> Script:
        """A new, empty script."""
        return Script(self)

    def _cur(self) -> Script:
        if self._batch is None:
            self._batch = Script(self)
        return self._batch

    def run(self, cmd: str, *args: Any, env: Optional[Dict[str, str]] = None) -> "asyncio.Future[CommandResult]":
        return self._cur().run(cmd, *args, env=env)

    def send_file(self, src_path: PathLike, dst_path: str) -> None:
        self._cur().upload_file(src_path, dst_path)

    def send_bytes(self, data: bytes, dst_path: str) -> None:
        self._cur().upload_bytes(data, dst_path)

    def send_json(self, dst_path: str, data: Any) -> None:
        self._cur().upload_json(data, dst_path)

    def download_file(self, src_path: str, dst_path: PathLike) -> None:
        self._cur().download_file(src_path, dst_path)

    def begin(self) -> None:
        self._batch = Script(self)

    def commit(self) -> Script:
        """Ends the current batch; yield it to run it."""
        s = self._cur()
        self._batch = None
        return s

    async def _execute(self, script: Script) -> Tuple[bool, str, "asyncio.Future[List[CommandResult]]"]:
        """Runs a script as one offload task; resolves its futures."""
        c = self._golem.client
        if not script._runs:
            raise ValueError("a script needs at least one run() command")
        spec: Dict[str, Any] = {"image": self._payload.image,
                                "stages": [{"name": f"cmd{i + 1}", "cmd": argv} for i, (argv, _) in enumerate(script._runs)]}
        if self._payload.runtime:
            spec["runtime"] = self._payload.runtime
        if self._payload.resources():
            spec["resources"] = self._payload.resources()
        if script._env:
            spec["env"] = dict(script._env)
        if self._exclude:
            spec["exclude"] = list(self._exclude)
        if self._golem.max_price is not None:
            spec["max_price"] = self._golem.max_price
        work = [src for src, _ in script._downloads if src.startswith("/work/")]
        if work:
            spec["artifacts"] = [src for src, _ in script._downloads]
        with tempfile.TemporaryDirectory(prefix="golem-up-") as tmp:
            dirs: Dict[str, pathlib.Path] = {}
            for dst, data in script._uploads:
                parent, name = dst.rsplit("/", 1) if "/" in dst.strip("/") else ("/golem", dst.strip("/"))
                d = dirs.setdefault(parent, pathlib.Path(tmp) / str(len(dirs)))
                d.mkdir(exist_ok=True)
                (d / name).write_bytes(data)
            inputs = []
            for parent, d in dirs.items():
                inputs.append({"cid": await c.add(d, temporary=True), "path": parent})
            if inputs:
                spec["inputs"] = inputs
        task = await c.submit(spec)
        self.task_ids.append(task["id"])
        if self._task is not None:
            self._task.id = task["id"]
        self._golem._running.add(task["id"])
        try:
            done = await c.wait(task["id"])
        finally:
            self._golem._running.discard(task["id"])
        self.provider_id = done.get("provider") or None
        stages = {s.get("name"): s for s in done.get("stages") or []}
        results = []
        for i, (argv, fut) in enumerate(script._runs):
            raw = stages.get(f"cmd{i + 1}")
            r = CommandResult(" ".join(argv), raw, "" if raw else (done.get("error") or "not run"))
            results.append(r)
            if not fut.done():
                fut.set_result(r)
        ok = done.get("state") == "completed"
        if not ok and not done.get("executions"):
            raise NoProviderError(done)
        if ok and script._downloads:
            with tempfile.TemporaryDirectory(prefix="golem-down-") as tmp:
                if done.get("outputs"):
                    out = await c.results(task["id"], pathlib.Path(tmp) / "out")
                else:
                    out = pathlib.Path(tmp) / "out"
                    out.mkdir()
                for src, handler in script._downloads:
                    rel = src.split("/", 2)[2] if src.startswith(("/outputs/", "/work/")) else src.lstrip("/")
                    local = out / rel
                    if not local.is_file():
                        ok = False
                        done = {**done, "error": f"download: {src} was not written by the task"}
                        break
                    r = handler(str(local))
                    if asyncio.iscoroutine(r):
                        await r
        all_done: "asyncio.Future[List[CommandResult]]" = asyncio.get_running_loop().create_future()
        all_done.set_result(results)
        failed = next((r for r in results if not r.success), None)
        why = done.get("error") or (failed.stderr if failed else "")
        return ok, why, all_done


async def _one(task: Task) -> AsyncIterator[Task]:
    yield task


Worker = Callable[[WorkContext, AsyncIterable[Task]], AsyncGenerator[Any, Any]]


class Golem:
    """The requestor (yapapi's Golem): an offload node (``home``, default
    $OFFLOAD_HOME, or ``client``) that executes tasks. ``budget`` and
    ``subnet_tag`` are accepted for yapapi's signature; ``max_price`` caps
    the price per CPU-second; ``max_retries`` bounds how often one piece
    runs again after a rejection or failure."""

    def __init__(self, budget: float = 0.0, subnet_tag: Optional[str] = None, home: Optional[PathLike] = None,
                 client: Optional[AsyncClient] = None, max_price: Optional[float] = None, max_retries: int = 3,
                 **_: Any):
        self.budget = budget
        self.subnet_tag = subnet_tag
        self.client = client or AsyncClient(home=home)
        self.max_price = max_price
        self.max_retries = max_retries
        self.failed: List[Task] = []
        self._running: set = set()
        self._stopped = asyncio.Event() if _has_loop() else None

    async def __aenter__(self) -> "Golem":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connects to the node."""
        if self._stopped is None:
            self._stopped = asyncio.Event()
        self._stopped.clear()
        await self.client.initiate_connection(timeout=10)

    async def stop(self) -> None:
        """Aborts: cancels every piece still running and ends
        execute_tasks."""
        if self._stopped is not None:
            self._stopped.set()
        await self._cancel_running()

    async def _cancel_running(self, ids: Optional[List[str]] = None) -> None:
        for tid in list(self._running) if ids is None else ids:
            try:
                await self.client.cancel(tid)
            except OffloadError:
                pass  # it ended meanwhile (409) or is gone

    async def _attempts(self, worker: Worker, task: Task, payload: Payload) -> bool:
        """Runs a piece until accepted, dropped, or out of retries."""
        exclude: List[str] = []
        for attempt in range(self.max_retries + 1):
            ctx = WorkContext(self, payload, exclude, task)
            task._verdict = None
            gen = worker(ctx, _one(task))
            failure: Optional[str] = None
            pending: Awaitable[Any] = gen.__anext__()
            while True:
                try:
                    script = await pending
                except StopAsyncIteration:
                    break
                except CommandExecutionError as e:
                    failure = str(e)
                    break
                try:
                    ok, why, fut = await ctx._execute(script)
                except NoProviderError:
                    if not exclude:
                        raise
                    log.info("task %r: no provider is left once %s are excluded", task.data, exclude)
                    await gen.aclose()
                    self.failed.append(task)
                    return False
                task.id = ctx.id
                if ctx.provider_id:
                    task.attempts.append(ctx.provider_id)
                    task.provider_id = ctx.provider_id
                if ok:
                    pending = gen.asend(fut)
                else:
                    cmd = next((r.command for r in fut.result() if not r.success), "script")
                    pending = gen.athrow(CommandExecutionError(cmd, why, why))
            await gen.aclose()
            if task._verdict == "accepted":
                return True
            if task._verdict == "rejected":
                break
            reason = failure or (task.rejections[-1] if task._verdict == "retry" and task.rejections else
                                 "the worker neither accepted nor rejected the result")
            log.info("task %r attempt %d on %s rejected: %s; running it elsewhere", task.data, attempt + 1,
                     ctx.provider_id, reason)
            if ctx.provider_id and ctx.provider_id not in exclude:
                exclude.append(ctx.provider_id)
        self.failed.append(task)
        return False

    async def execute_tasks(self, worker: Worker, data: Union[Iterable[Task], AsyncIterable[Task]],
                            payload: Payload, max_workers: Optional[int] = None,
                            timeout: Optional[_dt.timedelta] = None, job_id: Optional[str] = None,
                            **_: Any) -> AsyncIterator[Task]:
        """Runs worker over every task, at most max_workers pieces at once,
        and yields each task once accepted (in the order they finish). A
        timeout (a timedelta) aborts what is still running then; so do
        stop() and closing this iterator. NoProviderError when no provider
        can run a piece at all."""
        if self._stopped is None:
            self._stopped = asyncio.Event()
        sem = asyncio.Semaphore(max_workers or 16)
        done: "asyncio.Queue[Any]" = asyncio.Queue()
        pieces: List["asyncio.Task[None]"] = []

        async def piece(task: Task) -> None:
            async with sem:
                try:
                    ok = await self._attempts(worker, task, payload)
                    await done.put(("ok", task) if ok else ("dropped", task))
                except BaseException as e:  # noqa: BLE001 - handed to the consumer
                    await done.put(("err", e))

        async def feed() -> int:
            n = 0
            if hasattr(data, "__aiter__"):
                async for t in data:  # type: ignore[union-attr]
                    pieces.append(asyncio.ensure_future(piece(t)))
                    n += 1
            else:
                for t in data:  # type: ignore[union-attr]
                    pieces.append(asyncio.ensure_future(piece(t)))
                    n += 1
            return n

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout.total_seconds()
        try:
            total = await feed()
            for _i in range(total):
                get: "asyncio.Future[Any]" = asyncio.ensure_future(done.get())
                stop: "asyncio.Future[Any]" = asyncio.ensure_future(self._stopped.wait())
                left = None if deadline is None else max(0.0, deadline - loop.time())
                finished, _pending = await asyncio.wait({get, stop}, timeout=left,
                                                        return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if get not in finished:
                    get.cancel()
                    if not finished:
                        log.warning("execute_tasks: timed out after %s; aborting the pieces still running", timeout)
                    return
                kind, v = get.result()
                if kind == "err":
                    raise v
                if kind == "ok":
                    yield v
        finally:
            running = list(self._running)
            for p in pieces:
                p.cancel()
            await asyncio.gather(*pieces, return_exceptions=True)
            await self._cancel_running(running)


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


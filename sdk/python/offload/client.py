"""The synchronous client: one object per node, every call blocking.

:class:`Client` holds every call the package makes; :class:`offload.AsyncClient`
offers the same calls as coroutines, and the seed modules (``mecanywhere``,
``dphi``, ``hwf``, ``golem``) are thin layers over them.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shlex
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union, cast

from ._http import PathLike, Stream, Transport, deadline_left, quote
from .errors import (ConflictError, NoNodeError, OffloadError, TaskTimeoutError, BadRequestError,
                     error_for_task)

__all__ = ["Client", "TERMINAL_STATES", "DATA_ENV", "DATA_PATH_ENV", "DATA_MOUNT", "MAX_INLINE_DATA",
           "data_path", "parse_size"]

#: States after which a task never changes.
TERMINAL_STATES = frozenset({"completed", "failed", "canceled"})
#: Environment variable holding small ``data`` inline.
DATA_ENV = "OFFLOAD_DATA"
#: Environment variable holding the mount path of large ``data``.
DATA_PATH_ENV = "OFFLOAD_DATA_PATH"
#: Where large ``data`` is mounted inside the task.
DATA_MOUNT = "/inputs/data"
#: Largest ``data`` passed inline in the environment (the node's limit on
#: one environment value).
MAX_INLINE_DATA = 16 << 10

_CHUNK = 256 << 10
#: How many temporary adds a client remembers until a task uses them.
_MAX_TEMPORARY = 4096
_POOL_FILTERS = {"cpus", "memory", "gpus", "gpu_model", "gpu_memory", "arch", "os", "executor", "isolation"}

Command = Union[str, Sequence[str], None]
Task = Dict[str, Any]


def data_path(runtime: Optional[str] = None) -> str:
    """Where a task of ``runtime`` finds ``data`` that did not fit inline."""
    return DATA_MOUNT + "/data" if runtime == "wasm" else DATA_MOUNT


def parse_size(v: Union[int, float, str]) -> int:
    """A memory size in bytes: a number is MB (MECAnywhere's unit); a string
    takes a k/m/g/t suffix (powers of 1024, "512m", "2GiB") or is bytes."""
    if isinstance(v, (int, float)):
        return int(v * (1 << 20))
    s = str(v).strip().lower()
    if s.endswith("ib"):
        s = s[:-2]
    elif s.endswith("b"):
        s = s[:-1]
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    try:
        if s and s[-1] in mult:
            return int(float(s[:-1]) * mult[s[-1]])
        return int(s)
    except ValueError:
        raise ValueError(f"size {v!r}: want bytes or a number with k, m, g or t (512m, 2g)") from None


def split_command(command: Command) -> Optional[List[str]]:
    """A command as argv: a list stays as it is, a string is split like a
    shell (shlex)."""
    if command is None:
        return None
    if isinstance(command, str):
        return shlex.split(command)
    return [str(a) for a in command]


def resources(resource: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Maps MECAnywhere/DPhi style resources to the node's: cpu(s), memory
    (MB when a number, or "512m"/"2g") or memory_bytes, gpu(s)."""
    if not resource:
        return {}
    out: Dict[str, Any] = {}
    cpus = resource.get("cpus", resource.get("cpu"))
    if cpus is not None:
        out["cpus"] = float(cpus)
    gpus = resource.get("gpus", resource.get("gpu"))
    if gpus is not None:
        out["gpus"] = int(gpus)
    if "memory_bytes" in resource:
        out["memory_bytes"] = int(resource["memory_bytes"])
    elif resource.get("memory") is not None:
        out["memory_bytes"] = parse_size(resource["memory"])
    unknown = set(resource) - {"cpus", "cpu", "gpus", "gpu", "memory", "memory_bytes"}
    if unknown:
        raise ValueError(f"unknown resource keys {sorted(unknown)} (want cpu, memory, gpu)")
    return out


class Client:
    """A blocking client of one offload node's local HTTP API.

    Where the node is: ``home`` (default ``$OFFLOAD_HOME``, else
    ``~/.offload``) holds the URL the running node listens on (``api``) and
    its bearer token (``api.token``); ``url`` and ``token`` override them.
    An API served over HTTPS is pinned by the SHA-256 fingerprint of its
    certificate: ``fingerprint``, else ``$OFFLOAD_API_FINGERPRINT``, else
    ``$home/api.fingerprint``; a certificate that does not match raises
    FingerprintError before the token is sent. ``timeout`` bounds each
    plain request (not waits or streams, which take their own).

    A Client is safe to share between threads; every request uses its own
    connection. Waiting follows the node's server-sent events and never
    polls. Result dicts are the node's task status (the JSON of ``offload
    status --json``: id, state, exit_code, stdout, stderr, error, outputs,
    usage, bids, executions, stages, ...).
    """

    def __init__(self, home: Optional[PathLike] = None, url: Optional[str] = None, token: Optional[str] = None,
                 fingerprint: Optional[str] = None, timeout: Optional[float] = 300.0):
        self._t = Transport(home, url, token, fingerprint, timeout)
        self._ids: Dict[str, str] = {}  # caller's label -> node task id (offload_task)
        self._followers: Dict[str, threading.Thread] = {}
        self._results: Dict[str, Task] = {}
        self._streams: Dict[str, Stream] = {}
        # CIDs added temporary=True, held for the next task submitted that
        # uses them (then forgotten); bounded, oldest dropped first.
        self._temporary: Dict[str, None] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the token
        return f"{type(self).__name__}(url={self._t.url or '?'!r}, home={str(self._t.home)!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    @property
    def home(self) -> pathlib.Path:
        """The node's home directory."""
        return self._t.home

    @property
    def url(self) -> str:
        """The node's API base URL (read from ``$home/api`` when not given)."""
        return self._t.locate()[0]

    # --- plumbing ----------------------------------------------------------

    def _call(self, method: str, path: str, payload: Any = None, timeout: Optional[float] = -1.0) -> Any:
        return self._t.call(method, path, payload, timeout)

    def _task_path(self, task_id: str, suffix: str = "") -> str:
        return "/api/v1/tasks/" + quote(self._ids.get(task_id, task_id)) + suffix

    # --- connection ---------------------------------------------------------

    def initiate_connection(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Checks that the node answers and returns its identity ({"id",
        "addrs"}). With a timeout, waits up to that many seconds for a node
        that is still starting (it writes $home/api once its API listens);
        without one, fails at once with NoNodeError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.05
        while True:
            try:
                return self.id()
            except NoNodeError:
                if deadline is None or time.monotonic() >= deadline:
                    raise
                self._t.forget()
            time.sleep(min(pause, deadline_left(deadline) or 0))
            pause = min(pause * 2, 1.0)

    def id(self) -> Dict[str, Any]:
        """The node's peer id and addresses (``offload id``)."""
        return self._call("GET", "/api/v1/id")

    def peers(self) -> List[Dict[str, Any]]:
        """Connected peers."""
        return self._call("GET", "/api/v1/peers")

    def disconnect(self) -> None:
        """Stops following tasks offloaded with offload_task (they keep
        running on the swarm; their callbacks will not be called) and
        forgets them."""
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
            self._ids.clear()
            self._results.clear()
            followers = list(self._followers.values())
            self._followers.clear()
        for s in streams:
            s.close()
        for f in followers:
            f.join(timeout=5)

    # --- tasks --------------------------------------------------------------

    def task_spec(self, image: str, command: Command = None, data: Any = None,
                  resource: Optional[Mapping[str, Any]] = None, runtime: Optional[str] = None,
                  env: Optional[Mapping[str, Any]] = None, inputs: Optional[Iterable[Any]] = None,
                  timeout: Optional[float] = None, **spec_fields: Any) -> Task:
        """Builds a task spec (the node's JSON, see GET /openapi.json).

        image is a container image reference local to providers or a CID
        (``offload image push``), or with runtime="wasm" a module CID;
        command the arguments (a list, or a string split like a shell);
        data is passed as described in the package docs (``OFFLOAD_DATA``
        or a file at ``/inputs/data``); resource {"cpu", "memory", "gpu"}
        (memory in MB or "512m"); inputs (cid, path) pairs, (cid, path,
        size) or the node's dicts, mounted read-only; timeout the task's
        execution limit in seconds. Other keyword arguments go into the spec
        as they are (max_price, retries, provider, stages, artifacts,
        volumes, exclude, ...); None values are left out.
        """
        spec: Task = {"image": image}
        if runtime:
            spec["runtime"] = runtime
        cmd = split_command(command)
        if cmd is not None:
            spec["cmd"] = cmd
        if resource:
            spec["resources"] = resources(resource)
        if env:
            spec["env"] = {str(k): str(v) for k, v in env.items()}
        for inp in inputs or ():
            if isinstance(inp, Mapping):
                spec.setdefault("inputs", []).append(dict(inp))
            else:
                cid, path, *size = inp
                entry: Dict[str, Any] = {"cid": cid, "path": path}
                if size and size[0]:
                    entry["size"] = int(size[0])
                spec.setdefault("inputs", []).append(entry)
        if timeout is not None:
            spec["timeout_ms"] = int(timeout * 1000)
        spec.update({k: v for k, v in spec_fields.items() if v is not None})
        self._data_to_spec(spec, data)
        return spec

    def _data_to_spec(self, spec: Task, data: Any) -> None:
        if data is None:
            return
        env = spec.setdefault("env", {})
        raw: Optional[bytes] = None
        path: Optional[pathlib.Path] = None
        if isinstance(data, pathlib.PurePath):
            path = pathlib.Path(data)
        else:
            text = None
            if isinstance(data, str):
                text = data
            elif not isinstance(data, (bytes, bytearray, memoryview)):
                text = json.dumps(data)
            if text is not None and len(text.encode()) <= MAX_INLINE_DATA:
                env[DATA_ENV] = text
                return
            raw = text.encode() if text is not None else bytes(cast(bytes, data))
        wasm = spec.get("runtime") == "wasm"
        if path is not None and (path.is_dir() or not wasm):
            cid = self.add(path, temporary=True)  # a directory is mounted as it is
            env[DATA_PATH_ENV] = DATA_MOUNT
        elif not wasm:
            cid = self.add_bytes(raw or b"", name="data", temporary=True)
            env[DATA_PATH_ENV] = DATA_MOUNT
        else:
            # WASM mounts directories only: wrap the file in one.
            with tempfile.TemporaryDirectory(prefix="offload-data-") as tmp:
                f = pathlib.Path(tmp) / "data"
                if path is not None:
                    shutil.copyfile(path, f)
                else:
                    f.write_bytes(raw or b"")
                cid = self.add(tmp, temporary=True)
            env[DATA_PATH_ENV] = data_path("wasm")
        spec.setdefault("inputs", []).append({"cid": cid, "path": DATA_MOUNT})

    def submit(self, spec: Mapping[str, Any]) -> Task:
        """Submits a task spec and returns the stored task as soon as the
        node stored it (its ``id`` names it from then on). Inputs added with
        ``temporary=True`` are held for this task: the node releases them
        once every task holding them has ended."""
        task = self._call("POST", "/api/v1/tasks", dict(spec))
        self._hold_temporary(spec, task["id"])
        return task

    def _hold_temporary(self, spec: Mapping[str, Any], task_id: str) -> None:
        inputs = list(spec.get("inputs") or [])
        for sub in spec.get("subtasks") or []:
            inputs += sub.get("inputs") or []
        with self._lock:
            cids = [i["cid"] for i in inputs if isinstance(i, Mapping) and i.get("cid") in self._temporary]
            for c in cids:
                self._temporary.pop(c, None)
        for c in cids:
            try:
                self._call("POST", "/api/v1/pins/" + quote(c) + "/hold", {"task": task_id})
            except ConflictError:
                pass  # the same bytes are pinned for another reason: kept as they are

    def _note_temporary(self, cid: str) -> str:
        with self._lock:
            self._temporary[cid] = None
            while len(self._temporary) > _MAX_TEMPORARY:
                del self._temporary[next(iter(self._temporary))]
        return cid

    def status(self, task_id: str) -> Task:
        """A task's status; task_id is the node's id or a label given to
        offload_task. NotFoundError when the node has no such task."""
        return self._call("GET", self._task_path(task_id))

    def list(self, state: Union[str, Iterable[str], None] = None) -> List[Task]:
        """The node's tasks, newest first, optionally only those in some
        states."""
        path = "/api/v1/tasks"
        if state:
            path += "?state=" + urllib.parse.quote(state if isinstance(state, str) else ",".join(state))
        return self._call("GET", path)

    def cancel(self, task_id: str) -> Task:
        """Cancels a task and stops it on its provider. ConflictError when
        it already ended."""
        return self._call("POST", self._task_path(task_id, "/cancel"))

    def _open_events(self, task_id: str, final: bool = False, timeout: Optional[float] = None) -> Stream:
        path = self._task_path(task_id, "/events" + ("?final=true" if final else ""))
        return self._t.open("GET", path, accept="text/event-stream", timeout=timeout)

    @staticmethod
    def _snapshots(stream: Stream) -> Iterator[Task]:
        for event, data, _ in stream.events():
            if event in ("task", "message"):
                yield json.loads(data)
            elif event == "error":
                raise OffloadError(0, json.loads(data).get("error", data))

    def watch(self, task_id: str, on_change: Optional[Callable[[Task], Any]] = None,
              timeout: Optional[float] = None) -> Task:
        """Follows a task through the node's server-sent events, calling
        on_change with every snapshot, and returns the terminal one.
        TaskTimeoutError when it has not ended within timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self._open_events(task_id, timeout=timeout) as s:
                for snap in self._snapshots(s):
                    if on_change is not None:
                        on_change(snap)
                    if snap.get("state") in TERMINAL_STATES:
                        return snap
                    s.settimeout(deadline_left(deadline))
        except socket.timeout:
            raise TaskTimeoutError(f"task {task_id} did not end within {timeout} s", task_id) from None
        raise NoNodeError("the event stream ended before the task finished (did the node stop?)")

    def wait(self, task_id: str, timeout: Optional[float] = None, check: bool = False) -> Task:
        """Waits until a task ends and returns its status (one event: the
        node sends only the terminal snapshot). TaskTimeoutError after
        timeout seconds (the task goes on). With check, a task that did not
        complete raises TaskFailedError (NoProviderError when no provider
        took it)."""
        try:
            with self._open_events(task_id, final=True, timeout=timeout) as s:
                for snap in self._snapshots(s):
                    if snap.get("state") in TERMINAL_STATES:
                        return self._checked(snap) if check else snap
        except socket.timeout:
            raise TaskTimeoutError(f"task {task_id} did not end within {timeout} s", task_id) from None
        raise NoNodeError("the event stream ended before the task finished (did the node stop?)")

    @staticmethod
    def _checked(task: Task) -> Task:
        if task.get("state") != "completed":
            raise error_for_task(task)
        return task

    def _open_logs(self, task_id: str, follow: bool, since: Optional[str]) -> Stream:
        query = {}
        if follow:
            query["follow"] = "true"
        if since:
            query["from"] = since
        path = self._task_path(task_id, "/logs") + ("?" + urllib.parse.urlencode(query) if query else "")
        return self._t.open("GET", path, accept="text/event-stream", timeout=None)

    @staticmethod
    def _log_chunks(stream: Stream) -> Iterator[Dict[str, Any]]:
        for event, data, _ in stream.events():
            if event == "log":
                chunk = json.loads(data)
                # The node leaves out empty fields (a frame that only says
                # bytes were skipped has no text); every key the docstring
                # names is there for the caller.
                chunk.setdefault("text", "")
                chunk.setdefault("skipped", 0)
                yield chunk
            elif event == "error":
                raise OffloadError(0, json.loads(data).get("error", "log stream failed"))
            elif event == "end":
                return
        raise NoNodeError("the log stream ended early (did the node stop?); resume with since=<last chunk's next>")

    def logs(self, task_id: str, follow: bool = False, since: Optional[str] = None) -> Iterator[Dict[str, Any]]:
        """Yields a task's output as it is written: dicts with attempt,
        offset, stream ("stdout"/"stderr"), text, skipped, note and next,
        from the start of its current attempt or from since (a chunk's
        "next"); with follow, until the task ends. The node streams it from
        the provider (GET /api/v1/tasks/{id}/logs)::

            for chunk in client.logs(task_id, follow=True):
                print(chunk["text"], end="")
        """
        with self._open_logs(task_id, follow, since) as s:
            yield from self._log_chunks(s)

    def run(self, image: str, command: Command = None, data: Any = None,
            resource: Optional[Mapping[str, Any]] = None, runtime: Optional[str] = None,
            env: Optional[Mapping[str, Any]] = None, inputs: Optional[Iterable[Any]] = None,
            timeout: Optional[float] = None, check: bool = False, wait_timeout: Optional[float] = None,
            **spec_fields: Any) -> Task:
        """Submits a task and waits for it; returns its result dict (see
        task_spec for the arguments). With check, a task that did not
        complete raises TaskFailedError; wait_timeout bounds the wait
        (TaskTimeoutError; the task is then canceled)."""
        spec = self.task_spec(image, command, data, resource, runtime, env, inputs, timeout, **spec_fields)
        task = self.submit(spec)
        try:
            return self.wait(task["id"], timeout=wait_timeout, check=check)
        except TaskTimeoutError:
            self._cancel_quietly(task["id"])
            raise

    def _cancel_quietly(self, task_id: str) -> None:
        try:
            self.cancel(task_id)
        except ConflictError:
            pass

    def exec(self, task_id: str, command: Command) -> Dict[str, Any]:
        """Runs a command inside a running service task and returns
        {"exit_code", "stdout", "stderr"} (bytes)."""
        out, err = bytearray(), bytearray()
        body = json.dumps({"cmd": split_command(command)}).encode()
        with self._t.open("POST", self._task_path(task_id, "/exec"), body, "application/json", timeout=None) as s:
            for line in s.resp:
                ev = json.loads(line)
                if ev.get("stdout"):
                    out += base64.b64decode(ev["stdout"])
                if ev.get("stderr"):
                    err += base64.b64decode(ev["stderr"])
                if ev.get("error"):
                    raise OffloadError(0, f"exec in task {task_id}: {ev['error']}")
                if ev.get("exit_code") is not None:
                    return {"exit_code": ev["exit_code"], "stdout": bytes(out), "stderr": bytes(err)}
        raise NoNodeError("the exec stream ended before the command did")

    # --- MECAnywhere: offload with a callback, then join ---------------------

    def offload_task(self, task_id: str, container_ref: str, data: Any,
                     callback: Optional[Callable[[Task], Any]] = None, resource: Optional[Mapping[str, Any]] = None,
                     runtime: Optional[str] = None, command: Command = None, **spec_fields: Any) -> str:
        """Submits a task and returns the node's id for it; callback
        receives the result dict, with ``task_id`` set to the caller's
        label, when the task ends (in a thread of the client's). Wait for
        all with join. task_id is the caller's own label (unique per
        client); status, cancel and wait accept it too."""
        with self._lock:
            if task_id in self._ids:
                raise ValueError(f"task_id {task_id!r} is already offloaded by this client")
            self._ids[task_id] = ""
        try:
            task = self.submit(self.task_spec(container_ref, command, data, resource, runtime, **spec_fields))
        except BaseException:
            with self._lock:
                self._ids.pop(task_id, None)
            raise
        node_id = task["id"]
        stream = self._open_events(node_id, final=True, timeout=None)
        with self._lock:
            self._ids[task_id] = node_id
            self._streams[task_id] = stream

        def follow() -> None:
            try:
                result = None
                for snap in self._snapshots(stream):
                    if snap.get("state") in TERMINAL_STATES:
                        result = snap
                        break
                if result is None:
                    return
                result = {**result, "task_id": task_id}
                with self._lock:
                    self._results[task_id] = result
                if callback is not None:
                    callback(result)
            except OffloadError:
                pass  # disconnect closed the stream, or the node went away: join says so
            finally:
                stream.close()

        t = threading.Thread(target=follow, name=f"offload-follow-{task_id}", daemon=True)
        with self._lock:
            self._followers[task_id] = t
        t.start()
        return node_id

    def join(self, task_timeout: Optional[float] = None, join_timeout: Optional[float] = None) -> Dict[str, Task]:
        """Waits for every task offloaded with offload_task (their callbacks
        included) and returns their results by label.

        A task that does not end within task_timeout seconds (counted from
        this call) is canceled on the node; its callback then receives the
        canceled status. join_timeout bounds the whole wait: tasks still
        running then are left running and TaskTimeoutError is raised."""
        start = time.monotonic()
        join_deadline = None if join_timeout is None else start + join_timeout
        task_deadline = None if task_timeout is None else start + task_timeout
        with self._lock:
            followers = dict(self._followers)
        canceled = set()
        for label, t in followers.items():
            while t.is_alive():
                now = time.monotonic()
                if join_deadline is not None and now >= join_deadline:
                    raise TaskTimeoutError(f"join: {sum(f.is_alive() for f in followers.values())} tasks still "
                                           f"running after {join_timeout} s")
                if task_deadline is not None and now >= task_deadline and label not in canceled:
                    canceled.add(label)
                    self._cancel_quietly(self._ids[label])
                limits = [d for d in (join_deadline, None if label in canceled else task_deadline) if d is not None]
                t.join(max(0.001, min(limits) - now) if limits else None)
        with self._lock:
            for k in followers:
                self._followers.pop(k, None)
                self._streams.pop(k, None)
            return {k: self._results[k] for k in followers if k in self._results}

    # --- content ------------------------------------------------------------

    def uplink(self, paths: Union[PathLike, Iterable[PathLike]], cid_version: int = 1,
               public: bool = False, temporary: bool = False) -> List[str]:
        """Adds files and directories as content and returns their CIDs, in
        order. Files are streamed to the node (POST /api/v1/content), so
        they may live on another machine than the node; directories are
        added by path (POST /api/v1/content/add) and must be on the node's
        machine.

        Content is private: the node serves it only to the providers of the
        tasks that use it. With public=True any node may fetch it and it is
        announced in the DHT (see publish).

        With temporary=True the content is for the next task submitted
        through this client that uses it: it is held for that task and
        released once the task has ended (unless the same bytes were
        pinned for another reason before, which then stay as they were);
        content no task uses within an hour is released."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        cids = []
        for p in paths:
            p = pathlib.Path(p).expanduser().resolve()
            if p.is_dir():
                body: Dict[str, Any] = {"path": str(p), "cid_version": cid_version}
                if public:
                    body["public"] = True
                if temporary:
                    body["temporary"] = True
                cids.append(self._call("POST", "/api/v1/content/add", body)["cid"])
            elif p.is_file():
                with open(p, "rb") as f:
                    cids.append(self._add_stream(f, p.stat().st_size, p.name, cid_version, public, temporary))
            else:
                raise FileNotFoundError(f"uplink: {p} is neither a file nor a directory")
        if temporary:
            for c in cids:
                self._note_temporary(c)
        return cids

    def _add_stream(self, body: Any, length: int, name: str, cid_version: int = 1, public: bool = False,
                    temporary: bool = False) -> str:
        query: Dict[str, Any] = {"name": name, "cid_version": cid_version}
        if public:
            query["public"] = "true"
        if temporary:
            query["temporary"] = "true"
        path = "/api/v1/content?" + urllib.parse.urlencode(query)
        with self._t.open("POST", path, body, "application/octet-stream", length=length) as s:
            return json.loads(s.resp.read())["cid"]

    def add(self, path: PathLike, public: bool = False, cid_version: int = 1, temporary: bool = False) -> str:
        """Adds one file or directory as content and returns its CID, like
        ``offload add``: private unless public=True; with temporary=True
        only for the next task that uses it (see uplink)."""
        return self.uplink(path, cid_version=cid_version, public=public, temporary=temporary)[0]

    def add_bytes(self, data: bytes, name: str = "data", public: bool = False, cid_version: int = 1,
                  temporary: bool = False) -> str:
        """Adds bytes as one file and returns its CID (temporary: see
        uplink)."""
        cid = self._add_stream(bytes(data), len(data), name, cid_version, public, temporary)
        return self._note_temporary(cid) if temporary else cid

    def publish(self, cid: str) -> None:
        """Makes content the node holds public, like ``offload publish``:
        any node may fetch it and it is announced in the DHT."""
        self._call("POST", "/api/v1/content/" + quote(cid) + "/publish")

    def pins(self) -> List[Dict[str, Any]]:
        """The node's pinned content."""
        return self._call("GET", "/api/v1/pins")

    def unpin(self, cid: str) -> None:
        """Unpins content (its blocks are collected unless still used)."""
        self._call("DELETE", "/api/v1/pins/" + quote(cid))

    def cat(self, cid: str) -> bytes:
        """One file's bytes."""
        with self._t.open("GET", "/api/v1/content/" + quote(cid)) as s:
            return s.resp.read()

    def downlink(self, cid: str, dest: PathLike) -> pathlib.Path:
        """Writes content to dest (which must not exist) and returns its
        path. A file is streamed from the node (GET /api/v1/content/{cid});
        a directory is written by the node itself (POST
        /api/v1/content/{cid}/get), so dest must then be on the node's
        machine."""
        dest = pathlib.Path(dest).expanduser().resolve()
        if dest.exists():
            raise FileExistsError(f"downlink: {dest} exists")
        try:
            s = self._t.open("GET", "/api/v1/content/" + quote(cid), timeout=None)
        except BadRequestError as e:
            if "directory" not in e.message:
                raise
            self._call("POST", "/api/v1/content/" + quote(cid) + "/get", {"dest": str(dest)}, timeout=None)
            return dest
        tmp = dest.with_name(dest.name + ".part")
        try:
            with s, open(tmp, "wb") as f:
                while True:
                    chunk = s.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
        return dest

    def results(self, task_id: str, dest: PathLike) -> pathlib.Path:
        """Writes a task's outputs (a directory) to dest on the node's
        machine and returns dest."""
        dest = pathlib.Path(dest).expanduser().resolve()
        self._call("POST", self._task_path(task_id, "/results"), {"dest": str(dest)}, timeout=None)
        return dest

    def push_image(self, ref: str, public: bool = False) -> str:
        """Adds a local Docker image (``docker save``) as content and
        returns its CID, like ``offload image push``."""
        body: Dict[str, Any] = {"ref": ref}
        if public:
            body["public"] = True
        return self._call("POST", "/api/v1/images/push", body, timeout=None)["cid"]

    def build_image(self, context: PathLike, dockerfile: str = "Dockerfile", tag: Optional[str] = None,
                    timeout: Optional[float] = None, memory: Union[int, str, None] = None,
                    build_args: Optional[Mapping[str, Any]] = None, network: bool = False,
                    labels: Optional[Mapping[str, str]] = None) -> Task:
        """Starts building an image on a provider from a context directory
        on the node's machine (POST /api/v1/images/build) and returns the
        build task; once it completed, its status has ``image``, the
        image's CID. timeout is the build's limit in seconds, memory the
        memory of each RUN step ("2g" or bytes), build_args the values of
        the Dockerfile's ARGs. RUN steps have no network unless network
        asks for a provider that allows it (``offload node --build-network``);
        labels are further provider labels the build needs ("*": any
        value). Files a ``.dockerignore`` at the context's root excludes
        are never sent (Docker's rules)."""
        body: Dict[str, Any] = {"context": str(pathlib.Path(context).expanduser().resolve()),
                                "dockerfile": dockerfile}
        if tag:
            body["tag"] = tag
        if timeout is not None:
            body["timeout_ms"] = int(timeout * 1000)
        if memory is not None:
            body["memory"] = memory if isinstance(memory, int) else parse_size(memory)
        if build_args:
            body["build_args"] = {str(k): str(v) for k, v in build_args.items()}
        if network:
            body["network"] = True
        if labels:
            body["labels"] = {str(k): str(v) for k, v in labels.items()}
        return self._call("POST", "/api/v1/images/build", body)

    # --- services, tunnels, volumes -----------------------------------------

    def open_tunnel(self, task_id: str, port: int, local: Optional[str] = None) -> Dict[str, Any]:
        """Forwards a loopback address of this node to a port of a running
        service task; returns {"id", "task", "port", "local"} (local is
        host:port; a port 0 or no local picks a free one)."""
        body: Dict[str, Any] = {"port": int(port)}
        if local:
            body["local"] = local
        return self._call("POST", self._task_path(task_id, "/tunnels"), body)

    def close_tunnel(self, tunnel_id: str) -> Dict[str, Any]:
        """Closes a tunnel."""
        return self._call("DELETE", "/api/v1/tunnels/" + quote(tunnel_id))

    def tunnels(self) -> List[Dict[str, Any]]:
        """The open tunnels."""
        return self._call("GET", "/api/v1/tunnels")

    def volumes(self) -> List[Dict[str, Any]]:
        """The requestor's portable volumes: name, cid, size, updated."""
        return self._call("GET", "/api/v1/volumes") or []

    def remove_volume(self, name: str) -> Dict[str, Any]:
        """Forgets a volume and releases its content."""
        return self._call("DELETE", "/api/v1/volumes/" + quote(name))

    # --- swarm --------------------------------------------------------------

    def pool(self, **filters: Any) -> List[Dict[str, Any]]:
        """The providers the node knows that match hardware filters: cpus,
        memory ("16g" or bytes), gpus, gpu_model, gpu_memory, arch, os,
        executor, isolation, labels (a dict). "any" (or None) matches
        everything, as in HWF's hardware dict. [] when the node has no pool
        view."""
        labels = filters.pop("labels", None) or filters.pop("label", None) or {}
        unknown = set(filters) - _POOL_FILTERS
        if unknown:
            raise ValueError(f"unknown pool filters {sorted(unknown)} (want {', '.join(sorted(_POOL_FILTERS))}, labels)")
        q = [(k, str(v)) for k, v in filters.items() if v is not None]
        q += [("label", f"{k}={v}") for k, v in (labels.items() if isinstance(labels, Mapping) else [])]
        path = "/api/v1/pool" + ("?" + urllib.parse.urlencode(q) if q else "")
        try:
            return self._call("GET", path) or []
        except OffloadError as e:
            if e.status == 404:
                return []
            raise

    def ledger(self) -> Dict[str, Any]:
        """Credits earned and spent per peer, with receipts."""
        return self._call("GET", "/api/v1/ledger")

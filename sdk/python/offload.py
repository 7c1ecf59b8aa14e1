"""offload: a Python client for an offload node, standard library only.

It talks to a running node's local HTTP API (see GET /openapi.json on the
node) with asyncio, and mirrors the calls users know from MECAnywhere
(``initiate_connection``, ``offload_task`` with a callback, ``join``,
``disconnect``) and DPhi (``uplink``, ``downlink``, ``run``, ``status``,
``pool``)::

    import asyncio, offload

    async def main():
        c = offload.Client()                  # $OFFLOAD_HOME or ~/.offload
        await c.initiate_connection(timeout=10)
        await c.offload_task("t1", "hello:1", "some input", print,
                             command=["/hello", "env"])
        await c.join(task_timeout=60, join_timeout=120)
        print(await c.run("hello:1", command=["/hello", "echo", "hi"]))
        await c.disconnect()

    asyncio.run(main())

Where the node is: ``Client(home=None, url=None, token=None,
fingerprint=None)``. A running node writes its API URL to ``$home/api`` and
its bearer token to ``$home/api.token`` (mode 0600); the client reads both,
like the Go client's ``client.FromHome``. ``url`` and ``token`` override
them. An API served over HTTPS (always so beyond loopback) is pinned by the
SHA-256 fingerprint of its certificate: ``fingerprint``, else
``$OFFLOAD_API_FINGERPRINT``, else ``$home/api.fingerprint``; a certificate
that does not match raises FingerprintError before the token is sent.
Without a pin an https URL is verified against the system's authorities.

Waiting never polls: a task is followed through the node's server-sent
events (GET /api/v1/tasks/{id}/events), over asyncio streams, so one event
loop follows many tasks without a thread each.

How ``data`` reaches a task (offload_task, run): text of at most 16 KiB
(after JSON encoding for anything that is not ``str``) goes in the task's
environment as ``OFFLOAD_DATA``. Bytes, larger text, or a ``pathlib.Path``
are added to the node as content and mounted read-only under
``/inputs/data``; the task finds the file's path in ``OFFLOAD_DATA_PATH``
(``data_path(runtime)`` says it in advance). Docker tasks get the file
itself at ``/inputs/data``, streamed to the node. WASM tasks can mount only
directories, so there the file is wrapped in a directory,
``/inputs/data/data``, which is added by path: the node must then run on
this machine (as it does by default).

Content (uplink, add, data) is private by default: the node serves it only
to the providers of the tasks that use it. ``add(path, public=True)`` or
``uplink(paths, public=True)`` publishes it (any node may fetch it, and it
is announced in the DHT); ``publish(cid)`` publishes content already held.

Needs Python 3.9 or later.

Result dicts are the node's task status (the same JSON as ``offload status
--json``: id, state, exit_code, stdout, stderr, error, outputs, usage, bids,
executions, ...); callbacks of offload_task also get ``task_id``, the
caller's own label.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import os
import pathlib
import shlex
import shutil
import ssl
import tempfile
import urllib.parse
from typing import Any, Awaitable, Callable, Iterable

__all__ = ["Client", "OffloadError", "NoNodeError", "FingerprintError", "TERMINAL_STATES", "DATA_ENV", "DATA_PATH_ENV", "DATA_MOUNT",
           "data_path"]

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


def data_path(runtime: str | None = None) -> str:
    """Where a task of runtime finds ``data`` that did not fit inline."""
    return DATA_MOUNT + "/data" if runtime == "wasm" else DATA_MOUNT


class OffloadError(Exception):
    """An error answer of the node (``status`` is the HTTP status, 0 when
    the node could not be reached)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"node answered {status}: {message}" if status else message)
        self.status = status
        self.message = message


class NoNodeError(OffloadError):
    """No node is running for the home, or it does not answer."""

    def __init__(self, message: str):
        super().__init__(0, message)


class FingerprintError(OffloadError):
    """The API's TLS certificate is not the pinned one."""

    def __init__(self, message: str):
        super().__init__(0, message)


#: Environment variable pinning the API's certificate (as the Go client).
FINGERPRINT_ENV = "OFFLOAD_API_FINGERPRINT"


def _parse_fingerprint(s: str) -> bytes:
    """Reads a SHA-256 fingerprint as nodes write it ("sha256:" + hex), as
    bare hex, or as openssl prints it (colons, upper case)."""
    h = s.strip()
    if h.lower().startswith("sha256 fingerprint="):
        h = h.split("=", 1)[1]
    if h.lower().startswith("sha256:"):
        h = h[7:]
    try:
        b = bytes.fromhex(h.replace(":", ""))
    except ValueError:
        b = b""
    if len(b) != 32:
        raise OffloadError(0, f"certificate fingerprint {s!r}: want a SHA-256 digest "
                              "(64 hex digits, as in $OFFLOAD_HOME/api.fingerprint)")
    return b


class _Response:
    """One HTTP/1.1 response read from an asyncio stream."""

    def __init__(self, status: int, headers: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.status = status
        self.headers = headers
        self._reader = reader
        self._writer = writer
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        self._left = int(length) if length is not None and not self._chunked else None
        self._chunk_left = 0
        self._eof = False

    async def read_some(self) -> bytes:
        """Returns the next piece of the body, b"" at its end."""
        if self._eof:
            return b""
        if self._chunked:
            if self._chunk_left == 0:
                line = await self._reader.readline()
                if not line:
                    self._eof = True
                    return b""
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    await self._reader.readline()  # the empty trailer line
                    self._eof = True
                    return b""
                self._chunk_left = size
            data = await self._reader.read(min(self._chunk_left, _CHUNK))
            if not data:
                self._eof = True
                return b""
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                await self._reader.readexactly(2)  # CRLF after the chunk
            return data
        if self._left is not None:
            if self._left == 0:
                self._eof = True
                return b""
            data = await self._reader.read(min(self._left, _CHUNK))
            self._left -= len(data)
        else:
            data = await self._reader.read(_CHUNK)
        if not data:
            self._eof = True
        return data

    async def read(self) -> bytes:
        parts = []
        while True:
            data = await self.read_some()
            if not data:
                return b"".join(parts)
            parts.append(data)

    async def lines(self):
        """Yields the body's lines (without line ends) as they arrive."""
        buf = b""
        while True:
            data = await self.read_some()
            if not data:
                if buf:
                    yield buf.decode()
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.rstrip(b"\r").decode()

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class Client:
    """A client of one offload node.

    Every method is a coroutine. A Client keeps the tasks it offloaded with
    ``offload_task`` until ``join`` or ``disconnect``.
    """

    def __init__(self, home: str | os.PathLike | None = None, url: str | None = None, token: str | None = None,
                 fingerprint: str | None = None):
        self.home = pathlib.Path(home or os.environ.get("OFFLOAD_HOME") or pathlib.Path.home() / ".offload")
        self._given_url = url.rstrip("/") if url else None
        self._given_token = token
        self._given_pin = _parse_fingerprint(fingerprint) if fingerprint else None
        self._url = self._given_url
        self._token = self._given_token
        self._pin = self._given_pin
        self._ids: dict[str, str] = {}  # caller's task_id -> node task id
        self._watchers: dict[str, asyncio.Task] = {}  # caller's task_id -> follower
        self._results: dict[str, dict] = {}

    def __repr__(self) -> str:  # never shows the token
        return f"Client(url={self._url or '?'!r}, home={str(self.home)!r})"

    # --- connection -------------------------------------------------------

    def _locate(self) -> None:
        if self._url is None:
            try:
                self._url = (self.home / "api").read_text().strip().rstrip("/")
            except FileNotFoundError:
                raise NoNodeError(
                    f"no offload node is running for home {self.home}: start one with "
                    f"`offload node --home {self.home}` (add --provider to sell compute)") from None
        if self._token is None:
            try:
                self._token = (self.home / "api.token").read_text().strip()
            except FileNotFoundError:
                raise NoNodeError(f"no API token in {self.home / 'api.token'}: is the node's home right?") from None
        if self._pin is None:
            pin = os.environ.get(FINGERPRINT_ENV)
            if not pin:
                try:
                    pin = (self.home / "api.fingerprint").read_text()
                except FileNotFoundError:
                    pin = None
            if pin and pin.strip():
                self._pin = _parse_fingerprint(pin)

    @property
    def url(self) -> str:
        """The node's API base URL (read from $home/api when not given)."""
        self._locate()
        return self._url  # type: ignore[return-value]

    async def initiate_connection(self, timeout: float | None = None) -> dict:
        """Checks that the node answers and returns its identity ({"id",
        "addrs"}). With a timeout, waits up to that many seconds for a node
        that is still starting (it writes $home/api once its API listens),
        retrying with a growing pause; without one, fails at once."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        pause = 0.05
        while True:
            try:
                return await self._json("GET", "/api/v1/id")
            except NoNodeError:
                if deadline is None or loop.time() >= deadline:
                    raise
                # A (re)starting node writes a new URL and maybe a new token.
                self._url = self._given_url
                self._token = self._given_token
                self._pin = self._given_pin
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, 1.0)

    async def disconnect(self) -> None:
        """Stops following offloaded tasks (they keep running on the swarm;
        their callbacks will not be called) and forgets them."""
        for w in self._watchers.values():
            w.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        self._watchers.clear()
        self._ids.clear()
        self._results.clear()

    # --- HTTP -------------------------------------------------------------

    async def _request(self, method: str, path: str, body: bytes | None = None,
                       content_type: str | None = None, stream_from: pathlib.Path | None = None,
                       accept: str | None = None) -> _Response:
        self._locate()
        u = urllib.parse.urlsplit(self._url + path)
        if u.scheme not in ("http", "https"):
            raise OffloadError(0, f"unsupported API URL {self._url!r} (want http:// or https://HOST:PORT)")
        host = u.hostname or "127.0.0.1"
        port = u.port or (443 if u.scheme == "https" else 80)
        ctx = None
        if u.scheme == "https":
            ctx = ssl.create_default_context()
            if self._pin is not None:
                # The pin, checked below before anything is sent, replaces
                # the authorities and host name (a node's self-signed
                # certificate has neither).
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx,
                                                           server_hostname=host if ctx else None)
        except ssl.SSLCertVerificationError as e:
            raise OffloadError(0, f"the API certificate at {self._url} is not trusted (pin the node's self-signed "
                                  f"certificate: fingerprint= or ${FINGERPRINT_ENV}, from its "
                                  f"$OFFLOAD_HOME/api.fingerprint): {e}") from e
        except OSError as e:
            raise NoNodeError(f"no offload node answers at {self._url} (is it still running? start one with "
                              f"`offload node`): {e}") from e
        if ctx is not None and self._pin is not None:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True) or b""
            got = hashlib.sha256(der).digest()
            if got != self._pin:
                writer.close()
                raise FingerprintError(f"the API certificate at {self._url} does not match the pinned fingerprint: "
                                       f"it presented sha256:{got.hex()}, pinned sha256:{self._pin.hex()}")
        target = u.path + ("?" + u.query if u.query else "")
        length = len(body) if body is not None else (stream_from.stat().st_size if stream_from else 0)
        head = [f"{method} {target} HTTP/1.1", f"Host: {u.netloc}", f"Authorization: Bearer {self._token}",
                "Connection: close", f"Content-Length: {length}"]
        if content_type:
            head.append(f"Content-Type: {content_type}")
        if accept:
            head.append(f"Accept: {accept}")
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
            if body:
                writer.write(body)
            elif stream_from is not None:
                with open(stream_from, "rb") as f:
                    while chunk := await asyncio.to_thread(f.read, _CHUNK):
                        writer.write(chunk)
                        await writer.drain()
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise OffloadError(0, f"not an HTTP answer from {self._url}: {status_line!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            while True:
                line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            writer.close()
            raise NoNodeError(f"the node at {self._url} closed the connection: {e}") from e
        resp = _Response(status, headers, reader, writer)
        if status >= 300:
            raw = await resp.read()
            await resp.close()
            try:
                msg = json.loads(raw).get("error") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                msg = raw.decode(errors="replace").strip()
            raise OffloadError(status, msg)
        return resp

    async def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        resp = await self._request(method, path, body, "application/json" if body is not None else None)
        try:
            raw = await resp.read()
        finally:
            await resp.close()
        return json.loads(raw) if raw else None

    # --- tasks ------------------------------------------------------------

    async def _data_to_spec(self, spec: dict, data: Any) -> None:
        if data is None:
            return
        env = spec.setdefault("env", {})
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
            path = None
            raw = text.encode() if text is not None else bytes(data)
        wasm = spec.get("runtime") == "wasm"
        if path is not None and (path.is_dir() or not wasm):
            cid = (await self.uplink([path]))[0]  # a directory is mounted as it is
            env[DATA_PATH_ENV] = DATA_MOUNT
        elif not wasm:
            resp = await self._request("POST", "/api/v1/content?" + urllib.parse.urlencode({"name": "data"}), raw,
                                       "application/octet-stream")
            try:
                cid = json.loads(await resp.read())["cid"]
            finally:
                await resp.close()
            env[DATA_PATH_ENV] = DATA_MOUNT
        else:
            # WASM mounts directories only: wrap the file in one.
            with tempfile.TemporaryDirectory(prefix="offload-data-") as tmp:
                f = pathlib.Path(tmp) / "data"
                if path is not None:
                    await asyncio.to_thread(shutil.copyfile, path, f)
                else:
                    await asyncio.to_thread(f.write_bytes, raw)
                cid = (await self.uplink([tmp]))[0]
            env[DATA_PATH_ENV] = data_path("wasm")
        spec.setdefault("inputs", []).append({"cid": cid, "path": DATA_MOUNT})

    @staticmethod
    def _resources(resource: dict | None) -> dict:
        """Maps MECAnywhere/DPhi style resources to the node's: cpu(s),
        memory (MB when a number, or "512m"/"2g") or memory_bytes, gpu(s)."""
        if not resource:
            return {}
        out: dict[str, Any] = {}
        cpus = resource.get("cpus", resource.get("cpu"))
        if cpus is not None:
            out["cpus"] = float(cpus)
        gpus = resource.get("gpus", resource.get("gpu"))
        if gpus is not None:
            out["gpus"] = int(gpus)
        if "memory_bytes" in resource:
            out["memory_bytes"] = int(resource["memory_bytes"])
        elif resource.get("memory") is not None:
            out["memory_bytes"] = _size(resource["memory"])
        unknown = set(resource) - {"cpus", "cpu", "gpus", "gpu", "memory", "memory_bytes"}
        if unknown:
            raise ValueError(f"unknown resource keys {sorted(unknown)} (want cpu, memory, gpu)")
        return out

    async def _spec(self, image: str, command, data, resource, runtime, env=None, inputs=None, timeout=None,
                    **extra) -> dict:
        spec: dict[str, Any] = {"image": image}
        if runtime:
            spec["runtime"] = runtime
        if command is not None:
            spec["cmd"] = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if resource:
            spec["resources"] = self._resources(resource)
        if env:
            spec["env"] = {str(k): str(v) for k, v in env.items()}
        for inp in inputs or ():
            if isinstance(inp, dict):
                spec.setdefault("inputs", []).append(inp)
            else:
                cid, path, *size = inp
                entry = {"cid": cid, "path": path}
                if size and size[0]:
                    entry["size"] = int(size[0])
                spec.setdefault("inputs", []).append(entry)
        if timeout is not None:
            spec["timeout_ms"] = int(timeout * 1000)
        spec.update({k: v for k, v in extra.items() if v is not None})
        await self._data_to_spec(spec, data)
        return spec

    async def submit(self, spec: dict) -> dict:
        """Submits a task spec (the node's JSON, see GET /openapi.json) and
        returns the stored task as soon as the node stored it."""
        return await self._json("POST", "/api/v1/tasks", spec)

    def _node_id(self, task_id: str) -> str:
        return self._ids.get(task_id, task_id)

    async def status(self, task_id: str) -> dict:
        """Returns a task's status; task_id is the node's id or a label
        given to offload_task."""
        return await self._json("GET", "/api/v1/tasks/" + urllib.parse.quote(self._node_id(task_id), safe=""))

    async def list(self, state: str | Iterable[str] | None = None) -> list[dict]:
        """Lists the node's tasks, newest first, optionally in some states."""
        path = "/api/v1/tasks"
        if state:
            path += "?state=" + urllib.parse.quote(state if isinstance(state, str) else ",".join(state))
        return await self._json("GET", path)

    async def cancel(self, task_id: str) -> dict:
        """Cancels a task (a node id or an offload_task label)."""
        return await self._json("POST", "/api/v1/tasks/" + urllib.parse.quote(self._node_id(task_id), safe="") + "/cancel")

    async def watch(self, task_id: str, on_change: Callable[[dict], Any] | None = None) -> dict:
        """Follows a task through the node's server-sent events, calling
        on_change (sync or async) with every snapshot, and returns the
        terminal one."""
        path = "/api/v1/tasks/" + urllib.parse.quote(self._node_id(task_id), safe="") + "/events"
        resp = await self._request("GET", path, accept="text/event-stream")
        last = None
        try:
            async for line in resp.lines():
                if not line.startswith("data: "):
                    continue
                last = json.loads(line[6:])
                if on_change is not None:
                    r = on_change(last)
                    if inspect.isawaitable(r):
                        await r
                if last.get("state") in TERMINAL_STATES:
                    return last
        finally:
            await resp.close()
        raise OffloadError(0, "the event stream ended before the task finished (did the node stop?)")

    async def logs(self, task_id: str, follow: bool = False, since: str | None = None):
        """Yields a task's output as it is written (an async generator of
        dicts: attempt, offset, stream "stdout" or "stderr", text, skipped,
        note, next), from the start of its current attempt or from since (a
        chunk's "next"); with follow it goes on until the task ends. The
        node streams the output from the task's provider (GET
        /api/v1/tasks/{id}/logs); nothing is buffered beyond one chunk.

            async for chunk in client.logs(task_id, follow=True):
                print(chunk["text"], end="")
        """
        query = {}
        if follow:
            query["follow"] = "true"
        if since:
            query["from"] = since
        path = "/api/v1/tasks/" + urllib.parse.quote(self._node_id(task_id), safe="") + "/logs"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        resp = await self._request("GET", path, accept="text/event-stream")
        event = None
        try:
            async for line in resp.lines():
                if line.startswith("event: "):
                    event = line[7:]
                    continue
                if not line.startswith("data: "):
                    continue
                data = json.loads(line[6:])
                if event == "log":
                    yield data
                elif event == "error":
                    raise OffloadError(0, data.get("error", "log stream failed"))
                elif event == "end":
                    return
        finally:
            await resp.close()
        raise OffloadError(0, "the log stream ended early (did the node stop?); resume with since=<last chunk's next>")

    async def wait(self, task_id: str, timeout: float | None = None) -> dict:
        """Waits until a task ends and returns its status."""
        return await asyncio.wait_for(self.watch(task_id), timeout)

    async def run(self, image: str, command: str | list | None = None, data: Any = None,
                  resource: dict | None = None, runtime: str | None = None, env: dict | None = None,
                  inputs: Iterable | None = None, timeout: float | None = None, **spec_fields) -> dict:
        """Submits a task and waits for it; returns its result dict.

        image is a container image reference local to providers or a CID
        (``offload image push``), or with runtime="wasm" a module CID;
        command the arguments (a list, or a string split like a shell);
        inputs (cid, path) pairs, or (cid, path, size) to declare the
        size of content the node does not hold (the size of its DAG, which
        bounds what a provider fetches; the node fills it for content it
        holds and refuses one below it), mounted read-only; timeout the task's
        execution limit in seconds. Other keyword arguments go into the
        spec as they are (max_price, retries, provider, strategy, ...).
        """
        spec = await self._spec(image, command, data, resource, runtime, env, inputs, timeout, **spec_fields)
        task = await self.submit(spec)
        return await self.watch(task["id"])

    async def offload_task(self, task_id: str, container_ref: str, data: Any,
                           callback: Callable[[dict], Any] | Callable[[dict], Awaitable[Any]],
                           resource: dict | None = None, runtime: str | None = None,
                           command: str | list | None = None) -> str:
        """Submits a task and returns the node's id for it; callback (sync
        or async) receives the result dict, with ``task_id`` set to the
        caller's label, when the task ends. Wait for all with ``join``.

        task_id is the caller's own label (unique per Client); status,
        cancel and wait accept it too.
        """
        if task_id in self._ids:
            raise ValueError(f"task_id {task_id!r} is already offloaded by this client")
        spec = await self._spec(container_ref, command, data, resource, runtime)
        task = await self.submit(spec)
        self._ids[task_id] = task["id"]

        async def follow() -> dict:
            result = await self.watch(task["id"])
            result = {**result, "task_id": task_id}
            self._results[task_id] = result
            r = callback(result) if callback is not None else None
            if inspect.isawaitable(r):
                await r
            return result

        self._watchers[task_id] = asyncio.ensure_future(follow())
        return task["id"]

    async def join(self, task_timeout: float | None = None, join_timeout: float | None = None) -> dict[str, dict]:
        """Waits for every task offloaded with offload_task (their callbacks
        included) and returns their results by label.

        A task that does not end within task_timeout seconds (counted from
        this call) is canceled on the node; its callback then receives the
        canceled status. join_timeout bounds the whole wait: tasks still
        running then are left running, and asyncio.TimeoutError is raised.
        """
        async def one(label: str, w: asyncio.Task) -> None:
            try:
                await asyncio.wait_for(asyncio.shield(w), task_timeout)
            except asyncio.TimeoutError:
                try:
                    await self.cancel(self._ids[label])
                except OffloadError as e:
                    if e.status != 409:  # already ended: its result is on the way
                        raise
                await w

        watchers = dict(self._watchers)
        await asyncio.wait_for(asyncio.gather(*(one(k, w) for k, w in watchers.items())), join_timeout)
        for k in watchers:
            self._watchers.pop(k, None)
        return {k: self._results[k] for k in watchers if k in self._results}

    # --- content ----------------------------------------------------------

    async def uplink(self, paths: str | os.PathLike | Iterable[str | os.PathLike], cid_version: int = 1,
                     public: bool = False) -> list[str]:
        """Adds files and directories as content and returns their CIDs, in
        order. Files are streamed to the node (POST /api/v1/content), so
        they may live on another machine than the node; directories are
        added by path (POST /api/v1/content/add) and must be on the node's
        machine.

        Content is private: the node serves it only to the providers of the
        tasks that use it. With public=True any node may fetch it and it is
        announced in the DHT (see publish)."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        cids = []
        for p in paths:
            p = pathlib.Path(p).expanduser().resolve()
            if p.is_dir():
                body = {"path": str(p), "cid_version": cid_version}
                if public:
                    body["public"] = True
                out = await self._json("POST", "/api/v1/content/add", body)
            elif p.is_file():
                query = {"name": p.name, "cid_version": cid_version}
                if public:
                    query["public"] = "true"
                q = urllib.parse.urlencode(query)
                resp = await self._request("POST", "/api/v1/content?" + q, content_type="application/octet-stream",
                                           stream_from=p)
                try:
                    out = json.loads(await resp.read())
                finally:
                    await resp.close()
            else:
                raise FileNotFoundError(f"uplink: {p} is neither a file nor a directory")
            cids.append(out["cid"])
        return cids

    async def add(self, path: str | os.PathLike, public: bool = False, cid_version: int = 1) -> str:
        """Adds one file or directory as content and returns its CID, like
        `offload add`: private unless public=True (see uplink)."""
        return (await self.uplink(path, cid_version=cid_version, public=public))[0]

    async def publish(self, cid: str) -> None:
        """Makes content the node holds completely public, like `offload
        publish`: any node may fetch it and it is announced in the DHT. The
        node pins it; removing the pin ends the publication."""
        await self._json("POST", "/api/v1/content/" + urllib.parse.quote(cid, safe="") + "/publish")

    async def downlink(self, cid: str, dest: str | os.PathLike) -> pathlib.Path:
        """Writes content to dest (which must not exist) and returns its
        path. A file is streamed from the node (GET /api/v1/content/{cid});
        a directory is written by the node itself (POST
        /api/v1/content/{cid}/get), so dest must then be on the node's
        machine."""
        dest = pathlib.Path(dest).expanduser().resolve()
        if dest.exists():
            raise FileExistsError(f"downlink: {dest} exists")
        try:
            resp = await self._request("GET", "/api/v1/content/" + urllib.parse.quote(cid, safe=""))
        except OffloadError as e:
            if e.status == 400 and "directory" in e.message:
                await self._json("POST", "/api/v1/content/" + urllib.parse.quote(cid, safe="") + "/get", {"dest": str(dest)})
                return dest
            raise
        tmp = dest.with_name(dest.name + ".part")
        try:
            with open(tmp, "wb") as f:
                while data := await resp.read_some():
                    await asyncio.to_thread(f.write, data)
            os.replace(tmp, dest)
        finally:
            await resp.close()
            if tmp.exists():
                tmp.unlink()
        return dest

    async def results(self, task_id: str, dest: str | os.PathLike) -> pathlib.Path:
        """Writes a task's outputs (a directory) to dest on the node's machine."""
        dest = pathlib.Path(dest).expanduser().resolve()
        path = "/api/v1/tasks/" + urllib.parse.quote(self._node_id(task_id), safe="") + "/results"
        await self._json("POST", path, {"dest": str(dest)})
        return dest

    # --- swarm ------------------------------------------------------------

    async def peers(self) -> list[dict]:
        """Lists connected peers."""
        return await self._json("GET", "/api/v1/peers")

    async def pool(self, **hardware) -> list[dict]:
        """Lists the providers the node knows that match hardware filters:
        cpus, memory ("16g" or bytes), gpus, gpu_model, arch, os, executor,
        labels (a dict). "any" (or None) matches everything, as in HWF's
        hardware dict. Returns [] when the node has no pool view."""
        labels = hardware.pop("labels", None) or hardware.pop("label", None) or {}
        unknown = set(hardware) - {"cpus", "memory", "gpus", "gpu_model", "arch", "os", "executor"}
        if unknown:
            raise ValueError(f"unknown pool filters {sorted(unknown)}")
        q = [(k, str(v)) for k, v in hardware.items() if v is not None]
        q += [("label", f"{k}={v}") for k, v in (labels.items() if isinstance(labels, dict) else [])]
        path = "/api/v1/pool" + ("?" + urllib.parse.urlencode(q) if q else "")
        try:
            return await self._json("GET", path)
        except OffloadError as e:
            if e.status == 404:
                return []
            raise


def _size(v: Any) -> int:
    """A memory size: a number is MB (MECAnywhere's unit); a string takes
    a k/m/g/t suffix (powers of 1024) or is bytes."""
    if isinstance(v, (int, float)):
        return int(v * (1 << 20))
    s = str(v).strip().lower().rstrip("bi")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)

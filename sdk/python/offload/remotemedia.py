"""RemoteMedia's remote proxies, on offload: run an object's methods on a provider.

RemoteMedia users write::

    from offload.remotemedia import RemoteExecutorConfig, RemoteProxyClient

    config = RemoteExecutorConfig(image=PYTHON_IMAGE, pip_packages=["textstats"],
                                  wheels=["wheels/"], timeout=30, max_retries=3)
    async with RemoteProxyClient(config) as client:
        remote = await client.create_proxy(Counter(start=10))
        await remote.increment(by=5)          # a call, keyword arguments included
        print(await remote.value)             # a property or attribute
        print(await remote.slow_double(4))    # an async method
        async for x in await remote.count_up(3):   # a generator, streamed back
            print(x)

How it works
------------
``create_proxy(obj)`` packs a *session*: the object (pickled), the source of
the module that defines its class (the requestor's script too, loaded on the
provider under another name, so its ``if __name__ == "__main__":`` block does
not run: write scripts as :mod:`multiprocessing` asks), the local modules
those import, the ``wheels`` and the provider half
(:mod:`offload._proxyserver`). The session is added to the node as private
content and runs as a **service task** on a Python image (``image``, or
``$OFFLOAD_PYTHON_IMAGE``): the provider's sandbox, no network, its
resource limits. When ``pip_packages`` are named, the provider installs
them from the session's wheels only, into a virtual environment of that
session (under ``/tmp``, gone with the container), so sessions never share
packages and providers need no network.

Calls travel through a tunnel of the node (``open_tunnel``) to the service's
port. The requestor sends pickles; the provider answers in tagged JSON and
never in pickle, so a hostile provider cannot run code on the requestor
(see :mod:`offload._proxyserver`).

Code the session needs but the image lacks must come along: the
``offload`` package always does, local modules are found through the
imports of the class's module, and anything installed (site-packages) must
be in the image or in ``pip_packages``; imports of such libraries belong
inside the methods that use them when the requestor has them and the
provider should not need them. Values that come back are plain data:
None, bool, int, float, str, bytes, list, tuple, dict, set, complex and numpy
arrays (numpy arrays need numpy on the requestor, else they come back as
their tagged dict). Exceptions raised remotely are raised here as
:class:`RemoteError`, which also derives from the builtin exception of the
same name (``except ValueError`` works).

``timeout`` bounds every call (``asyncio.TimeoutError`` /
:class:`offload.TaskTimeoutError`). ``max_retries`` is how many times a call is
tried again when the session's provider is lost (it died, was cut off, or
its service ended): the session starts again on another provider, from the
object's state after the last call that completed (the provider sends the
state back after each call that changed it, when it pickles in at most
16 MiB; ``keep_state=False`` turns this off and restarts from the state
given to ``create_proxy``). A generator cannot move: a lost generator
raises :class:`SessionLostError`.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import builtins
import dataclasses
import functools
import importlib.util
import json
import logging
import os
import pathlib
import pickle
import secrets
import shutil
import sys
import sysconfig
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Tuple, Type, Union

from . import _proxyserver as wire
from .aio import AsyncClient
from .errors import BadRequestError, OffloadError, TaskFailedError, TaskTimeoutError

log = logging.getLogger("offload.remotemedia")

#: The TCP port the provider half listens on inside the service.
PROXY_PORT = 7070
#: Environment variable naming the default Python image.
IMAGE_ENV = "OFFLOAD_PYTHON_IMAGE"
#: Most bytes of code a session ships (its modules and packages).
MAX_CODE_BYTES = 16 << 20
#: Most modules a session ships.
MAX_MODULES = 256

__all__ = ["RemoteExecutorConfig", "RemoteProxyClient", "RemoteProxy", "RemoteGenerator", "RemoteError",
           "SessionLostError", "create_proxy", "PROXY_PORT"]


class RemoteError(OffloadError):
    """An exception raised by the object's code on the provider.

    ``remote_type`` is the exception's class name there and
    ``remote_traceback`` its traceback. When the name is a builtin exception
    (ValueError, KeyError, ...), the raised class also derives from it.
    """

    def __init__(self, remote_type: str, message: str, remote_traceback: str = ""):
        super().__init__(0, f"{remote_type}: {message}")
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return f"{self.remote_type}: {self.remote_message} (raised on the provider)"


class SessionLostError(OffloadError, ConnectionError):
    """The session's provider is gone and the call could not be tried
    again (retries spent, or an open generator was lost)."""

    def __init__(self, message: str):
        super().__init__(0, message)


@functools.lru_cache(maxsize=None)
def _remote_class(name: str) -> Type[RemoteError]:
    base = getattr(builtins, name, None)
    if isinstance(base, type) and issubclass(base, Exception) and not issubclass(base, OffloadError):
        try:
            return type(name, (RemoteError, base), {"__module__": __name__})
        except TypeError:  # a builtin whose layout does not mix
            pass
    return RemoteError


def _raise_remote(err: Any) -> None:
    if not isinstance(err, dict):
        raise wire.ProtocolError("malformed error reply")
    name = str(err.get("type", "Exception"))
    cls = _remote_class(name)
    e = cls.__new__(cls)
    RemoteError.__init__(e, name, str(err.get("message", "")), str(err.get("traceback", "")))
    raise e


@dataclasses.dataclass
class RemoteExecutorConfig:
    """How proxies run, by RemoteMedia's names where they carry over.

    ``host``/``port``/``auth_token``/``ssl_enabled`` name the offload node
    whose API this client uses (default: the local node, found through
    ``$OFFLOAD_HOME``); the remote machine itself is whichever provider
    takes the session.
    """

    host: Optional[str] = None
    port: Optional[int] = None
    protocol: str = "offload"
    auth_token: Optional[str] = None
    #: Seconds a call may take before it raises a timeout.
    timeout: float = 30.0
    #: How many times a call is tried again on another provider when the
    #: session's provider is lost.
    max_retries: int = 3
    ssl_enabled: bool = False
    #: Requirements installed on the provider (pip syntax), from ``wheels``.
    pip_packages: List[str] = dataclasses.field(default_factory=list)
    #: Wheel files, or directories of them, holding ``pip_packages`` and
    #: what they depend on (the provider has no package index).
    wheels: List[Union[str, os.PathLike]] = dataclasses.field(default_factory=list)
    #: The Python image (a local name the provider allows, or a CID);
    #: default ``$OFFLOAD_PYTHON_IMAGE``.
    image: Optional[str] = None
    #: Task resources, as in a task spec: ``{"cpus": 1, "memory_bytes": N}``.
    resources: Optional[Dict[str, Any]] = None
    #: More modules (or their names) to ship with the session.
    extra_modules: List[Any] = dataclasses.field(default_factory=list)
    #: Seconds to wait for a session to start on a provider.
    start_timeout: float = 180.0
    #: Restart lost sessions from the state after the last call (True) or
    #: from the object given to create_proxy (False).
    keep_state: bool = True
    #: Run on this provider (peer id) only.
    provider: Optional[str] = None
    #: The node's home directory (default ``$OFFLOAD_HOME`` or ``~/.offload``).
    home: Optional[Union[str, os.PathLike]] = None

    def client(self) -> AsyncClient:
        """The offload client these settings name."""
        url = None
        if self.host:
            scheme = "https" if self.ssl_enabled else "http"
            url = f"{scheme}://{self.host}:{self.port or 80}"
        return AsyncClient(home=self.home, url=url, token=self.auth_token)


class _Session:
    """One running session: its task, tunnel and connection."""

    def __init__(self, task_id: str, provider: str, tunnel_id: str, local: str,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.task_id = task_id
        self.provider = provider
        self.tunnel_id = tunnel_id
        self.local = local
        self.reader = reader
        self.writer = writer
        # Set when a call timed out: its answer may still come on this
        # connection, so the next call dials a new one.
        self.stale = False


class RemoteProxyClient:
    """Creates proxies whose methods run on providers (RemoteMedia's
    ``RemoteProxyClient``). Use it as an async context manager, or call
    :meth:`connect` and :meth:`disconnect`; disconnecting stops every
    session it started."""

    def __init__(self, config: Optional[RemoteExecutorConfig] = None, client: Optional[AsyncClient] = None):
        self.config = config or RemoteExecutorConfig()
        self.client = client or self.config.client()
        self._proxies: List[RemoteProxy] = []

    async def connect(self) -> None:
        """Checks that the node answers."""
        await self.client.initiate_connection(timeout=10)

    async def disconnect(self) -> None:
        """Stops every session this client started."""
        proxies, self._proxies = self._proxies, []
        for p in proxies:
            await p.close()

    async def __aenter__(self) -> "RemoteProxyClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()

    async def create_proxy(self, obj: Any, serialization_format: str = "pickle") -> "RemoteProxy":
        """Starts a session holding ``obj`` on a provider and returns its
        proxy: every attribute of the proxy is awaited (methods are called
        remotely, properties read remotely)."""
        if serialization_format != "pickle":
            raise BadRequestError(400, f"serialization format {serialization_format!r} is not supported (pickle only)")
        image = self.config.image or os.environ.get(IMAGE_ENV)
        if not image:
            raise BadRequestError(400, f"no Python image: set RemoteExecutorConfig(image=...) or ${IMAGE_ENV}")
        if self.config.pip_packages and not self.config.wheels:
            raise BadRequestError(400, "pip_packages need wheels: providers have no package index, "
                                       "give RemoteExecutorConfig(wheels=[...]) holding them")
        try:
            state = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise BadRequestError(400, f"the object cannot be pickled: {e}") from e
        proxy = RemoteProxy(self, obj, image, state, _pack_code(type(obj), self.config.extra_modules))
        await proxy._start()
        self._proxies.append(proxy)
        return proxy


class RemoteProxy:
    """An object running on a provider. ``await proxy.method(...)`` calls a
    method, ``await proxy.attribute`` reads an attribute or property;
    generators come back as :class:`RemoteGenerator` (``async for``)."""

    def __init__(self, owner: RemoteProxyClient, obj: Any, image: str, state: bytes, code: Dict[str, Any]):
        self._owner = owner
        self._obj = obj
        self._image = image
        self._state = state
        self._code = code
        self._token = secrets.token_bytes(32)
        self._session: Optional[_Session] = None
        self._lock = asyncio.Lock()
        self._generation = 0
        self._closed = False
        self._excluded: List[str] = []  # providers that lost a session

    def __repr__(self) -> str:
        where = f"task {self._session.task_id} on {self._session.provider}" if self._session else "not running"
        return f"<RemoteProxy({type(self._obj).__name__}) {where}>"

    @property
    def task_id(self) -> Optional[str]:
        """The offload task of the session now serving the proxy."""
        return self._session.task_id if self._session else None

    @property
    def provider(self) -> Optional[str]:
        """The provider serving the proxy now."""
        return self._session.provider if self._session else None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        local = getattr(type(self._obj), name, None)
        if local is not None and callable(local) and not isinstance(local, property):

            async def remote_method(*args: Any, **kwargs: Any) -> Any:
                return await self._call({"op": "call", "name": name, "args": args, "kwargs": kwargs})

            remote_method.__name__ = name
            remote_method.__doc__ = getattr(local, "__doc__", None)
            return remote_method
        return self._call({"op": "getattr", "name": name})

    async def close(self) -> None:
        """Stops the session: closes its connection and tunnel and cancels
        its task."""
        self._closed = True
        await self._drop()

    # -- sessions ---------------------------------------------------------

    async def _start(self) -> None:
        c = self._owner.client
        cfg = self._owner.config
        with tempfile.TemporaryDirectory(prefix="offload-proxy-") as tmp:
            session_dir = pathlib.Path(tmp) / "session"
            _write_session(session_dir, self._state, self._code, self._token, cfg)
            cid = await c.add(session_dir, temporary=True)
        spec: Dict[str, Any] = {
            "name": "proxy-" + type(self._obj).__name__.lower(),
            "runtime": "docker",
            "image": self._image,
            "cmd": ["python3", "/inputs/session/_proxyserver.py", "/inputs/session", str(PROXY_PORT)],
            "service": True,
            "ports": [PROXY_PORT],
            "inputs": [{"cid": cid, "path": "/inputs/session"}],
        }
        if cfg.resources:
            spec["resources"] = dict(cfg.resources)
        if cfg.provider:
            spec["provider"] = cfg.provider
        if self._excluded:
            spec["exclude"] = list(self._excluded)
        task = await c.submit(spec)
        task_id = task["id"]
        try:
            task = await self._wait_running(task_id, cfg.start_timeout)
            tunnel = await c.open_tunnel(task_id, PROXY_PORT)
            try:
                reader, writer = await self._dial(tunnel["local"], task_id, cfg.start_timeout)
            except BaseException:
                await _quietly(c.close_tunnel(tunnel["id"]))
                raise
        except BaseException:
            await _quietly(c.cancel(task_id))
            raise
        self._session = _Session(task_id, task.get("provider", ""), tunnel["id"], tunnel["local"], reader, writer)
        self._generation += 1
        log.info("proxy of %s runs as task %s on %s", type(self._obj).__name__, task_id, self.provider)

    async def _wait_running(self, task_id: str, timeout: float) -> Dict[str, Any]:
        class _Running(Exception):
            pass

        def check(snap: Dict[str, Any]) -> None:
            if snap.get("state") == "running":
                raise _Running(snap)

        try:
            final = await self._owner.client.watch(task_id, on_change=check, timeout=timeout)
        except _Running as r:
            return r.args[0]
        # It ended without running: say why, with its output.
        ex = (final.get("executions") or [{}])[-1]
        raise TaskFailedError(final, f"proxy session {task_id} ended ({final.get('state')}) before it served: "
                                     f"{final.get('error') or final.get('reason') or ''} "
                                     f"{(ex.get('stderr') or final.get('stderr') or '').strip()[-2000:]}".strip())

    async def _dial(self, local: str, task_id: str, timeout: float) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connects through the tunnel and says hello; the service may need a
        moment (and its pip install) before it listens."""
        host, port = local.rsplit(":", 1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Optional[BaseException] = None
        delay = 0.05
        while loop.time() < deadline:
            try:
                reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
            except OSError as e:
                last = e
            else:
                try:
                    wire.write_frame(writer, pickle.dumps({"op": "hello", "token": self._token}))
                    await writer.drain()
                    reply = wire.decode_reply(await asyncio.wait_for(wire.read_frame(reader), 10))
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                    last = e
                    writer.close()
                else:
                    if "error" in reply:
                        writer.close()
                        _raise_remote(reply["error"])
                    return reader, writer
            st = await self._owner.client.status(task_id)
            if st.get("state") not in ("running",):
                ex = (st.get("executions") or [{}])[-1]
                raise TaskFailedError(st, f"proxy session {task_id} stopped ({st.get('state')}) while starting: "
                                          f"{(ex.get('stderr') or '').strip()[-2000:]}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        raise TaskTimeoutError(f"proxy session {task_id} did not answer within {timeout} s (last: {last})", task_id)

    async def _drop(self) -> None:
        s, self._session = self._session, None
        if s is None:
            return
        s.writer.close()
        c = self._owner.client
        await _quietly(c.close_tunnel(s.tunnel_id))
        await _quietly(c.cancel(s.task_id))

    # -- calls ------------------------------------------------------------

    async def _call(self, req: Dict[str, Any], generation: Optional[int] = None) -> Any:
        """Sends one request and returns its value; tries again on another
        provider when the session is lost (not for a generator's steps)."""
        if self._closed:
            raise SessionLostError("the proxy is closed")
        try:
            payload = pickle.dumps(req, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise BadRequestError(400, f"the call's arguments cannot be pickled: {e}") from e
        cfg = self._owner.config
        tries = 0
        while True:
            async with self._lock:
                if generation is not None and generation != self._generation:
                    raise SessionLostError("the generator's session was lost; a generator cannot move to another provider")
                if self._session is None:
                    await self._start()
                s = self._session
                assert s is not None
                try:
                    if s.stale:
                        s.writer.close()
                        s.reader, s.writer = await self._dial(s.local, s.task_id, cfg.start_timeout)
                        s.stale = False
                    reply = await asyncio.wait_for(self._exchange(s, payload), cfg.timeout)
                except asyncio.TimeoutError:
                    # The connection is now out of step with the calls: the
                    # next call starts on a new connection of the same session.
                    s.stale = True
                    raise TaskTimeoutError(f"{req.get('name', 'call')} took more than {cfg.timeout} s on "
                                           f"{s.provider}", s.task_id) from None
                except (OSError, asyncio.IncompleteReadError, wire.ProtocolError) as e:
                    lost = s
                    await self._drop()
                    if generation is not None or tries >= cfg.max_retries:
                        raise SessionLostError(f"lost the session on {lost.provider} (task {lost.task_id}): {e}") from e
                    tries += 1
                    log.warning("proxy session on %s lost (%s); starting again elsewhere (try %d of %d)",
                                lost.provider, e, tries, cfg.max_retries)
                    if lost.provider and lost.provider not in self._excluded:
                        self._excluded.append(lost.provider)
                    continue
            return self._result(reply)

    async def _exchange(self, s: _Session, payload: bytes) -> Dict[str, Any]:
        wire.write_frame(s.writer, payload)
        await s.writer.drain()
        return wire.decode_reply(await wire.read_frame(s.reader))

    def _result(self, reply: Dict[str, Any]) -> Any:
        if "state" in reply and self._owner.config.keep_state:
            try:
                self._state = base64.b64decode(reply["state"], validate=True)
            except (ValueError, TypeError):
                raise wire.ProtocolError("malformed state in reply") from None
        if "error" in reply:
            _raise_remote(reply["error"])
        value = wire.from_wire(reply.get("ok"))
        if isinstance(value, dict) and "__generator__" in value:
            return RemoteGenerator(self, int(value["__generator__"]), self._generation)
        return value


class RemoteGenerator:
    """A generator (or async generator) running on the provider; its items
    stream back in batches as you iterate::

        async for item in await proxy.stream(...):
            ...
    """

    def __init__(self, proxy: RemoteProxy, gen_id: int, generation: int, batch: int = 16):
        self._proxy = proxy
        self._id = gen_id
        self._generation = generation
        self._batch = batch
        self._buf: List[Any] = []
        self._done = False

    def __aiter__(self) -> "RemoteGenerator":
        return self

    async def __anext__(self) -> Any:
        if not self._buf and not self._done:
            r = await self._proxy._call({"op": "next", "gen": self._id, "n": self._batch}, self._generation)
            self._buf = list(r.get("items", []))
            self._done = bool(r.get("done"))
        if self._buf:
            return self._buf.pop(0)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Closes the remote generator early."""
        if not self._done:
            self._done = True
            self._buf = []
            await _quietly(self._proxy._call({"op": "close", "gen": self._id}, self._generation))


async def create_proxy(obj: Any, config: Optional[RemoteExecutorConfig] = None, **settings: Any) -> RemoteProxy:
    """Creates a proxy with a client of its own (``settings`` are
    :class:`RemoteExecutorConfig` fields); ``await proxy.close()`` ends it."""
    cfg = config or RemoteExecutorConfig(**settings)
    return await RemoteProxyClient(cfg).create_proxy(obj)


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except (OffloadError, OSError, asyncio.TimeoutError):
        pass


# -- packing a session -------------------------------------------------------


def _library_dirs() -> List[str]:
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.add(os.path.realpath(p))
    for p in sys.path:
        if "site-packages" in p or "dist-packages" in p:
            dirs.add(os.path.realpath(p))
    return sorted(dirs)


def _is_library(path: str, dirs: List[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == d or real.startswith(d + os.sep) for d in dirs)


def _pack_code(cls: type, extra: Iterable[Any]) -> Dict[str, Any]:
    """Finds the code a session needs: the module defining ``cls`` (the
    script itself when that is ``__main__``) and every local module they
    import, transitively; library modules are the provider's own."""
    libs = _library_dirs()  # installed code: the provider brings its own
    files: Dict[str, str] = {}  # relative path in code/ -> local path
    main: Optional[str] = None
    todo: List[str] = []  # files whose imports are still to be read

    def add_module(name: str) -> None:
        top = name.split(".")[0]
        if top in sys.builtin_module_names or top == "offload" or top in files or top + ".py" in files:
            return
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return
        if spec is None or not spec.origin or spec.origin in ("built-in", "frozen") or _is_library(spec.origin, libs):
            return
        if spec.submodule_search_locations:  # a package: ship its directory
            pkg_dir = list(spec.submodule_search_locations)[0]
            for root, _dirs, names in os.walk(pkg_dir):
                for n in names:
                    if n.endswith(".py"):
                        p = os.path.join(root, n)
                        files[os.path.join(top, os.path.relpath(p, pkg_dir))] = p
                        todo.append(p)
        elif spec.origin.endswith(".py"):
            files[top + ".py"] = spec.origin
            todo.append(spec.origin)

    # The offload package itself goes along: scripts import it at their top,
    # and providers' images do not have it.
    pkg_dir = os.path.dirname(os.path.abspath(__file__))
    for n in sorted(os.listdir(pkg_dir)):
        if n.endswith((".py", ".typed")):
            files[os.path.join("offload", n)] = os.path.join(pkg_dir, n)
    modname = cls.__module__
    if modname == "__main__":
        path = getattr(sys.modules["__main__"], "__file__", None)
        if not path:
            raise BadRequestError(400, f"class {cls.__qualname__} is defined in an interactive session; "
                                       "define it in a file so that it can be shipped")
        main = "_offload_main.py"
        files[main] = path
        todo.append(path)
    else:
        add_module(modname)
    for m in extra:
        add_module(m if isinstance(m, str) else m.__name__)
    seen = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if len(seen) > MAX_MODULES:
            raise BadRequestError(400, f"the session would ship more than {MAX_MODULES} modules")
        try:
            tree = ast.parse(pathlib.Path(path).read_text(), path)
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    add_module(a.name)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                add_module(node.module)
    size = sum(os.path.getsize(p) for p in files.values())
    if size > MAX_CODE_BYTES:
        raise BadRequestError(400, f"the session's code is {size} bytes, over {MAX_CODE_BYTES}")
    return {"files": files, "main": main}


def _write_session(d: pathlib.Path, state: bytes, code: Dict[str, Any], token: bytes, cfg: RemoteExecutorConfig) -> None:
    (d / "code").mkdir(parents=True)
    shutil.copyfile(wire.__file__, d / "_proxyserver.py")
    for rel, src in code["files"].items():
        dst = d / "code" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    (d / "object.pkl").write_bytes(state)
    if cfg.pip_packages:
        wheels = d / "wheels"
        wheels.mkdir()
        for w in cfg.wheels:
            p = pathlib.Path(w)
            found = sorted(p.glob("*.whl")) if p.is_dir() else [p]
            for f in found:
                if not f.is_file():
                    raise BadRequestError(400, f"wheel {f} does not exist")
                shutil.copyfile(f, wheels / f.name)
    manifest = {"token": token.hex(), "main": code["main"], "pip_packages": list(cfg.pip_packages),
                "keep_state": cfg.keep_state}
    (d / "manifest.json").write_text(json.dumps(manifest))

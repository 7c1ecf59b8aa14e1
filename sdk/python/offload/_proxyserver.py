"""The provider side of :mod:`offload.remotemedia`, and the wire format both sides share.

This file has two lives:

* On the requestor it is imported by :mod:`offload.remotemedia` for the wire
  format (:func:`encode_reply`, :func:`decode_reply`, :func:`read_frame`,
  :func:`write_frame`).
* It is copied, as it is, into every proxy session's content and runs as the
  service's main program inside a Python container on the provider::

      python3 /inputs/session/_proxyserver.py /inputs/session PORT

  There it installs the session's ``pip_packages`` into a virtual environment
  of its own under ``/tmp`` (from the wheels in the session, never from a
  network), loads the session's code and object, and answers method calls on
  ``PORT`` until the service is stopped.

Standard library only: it must run on any Python 3.9+ image.

The wire format
---------------
Every message is a frame: a 4-byte big-endian length, then that many bytes.

* Requestor to provider: a :mod:`pickle` of a dict (``op`` and its
  arguments). The provider runs the requestor's code anyway, inside its
  sandbox, so a pickle from the requestor gives it nothing more.
* Provider to requestor: JSON (UTF-8) of a dict, ``{"ok": VALUE}`` or
  ``{"error": {"type", "message", "traceback"}}``, plus optional ``state``.
  Never a pickle: a pickle would let a hostile provider run code on the
  requestor. Values are tagged JSON (:func:`to_wire`): None, bool, int, float,
  str, list and str-keyed dicts as themselves; bytes, tuples, sets, complex
  numbers, dicts with other keys and numpy arrays (no object dtype) as
  ``{"__t": ...}`` objects. Anything else is refused with a clear error on
  the provider instead of being sent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib.util
import inspect
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import traceback
from typing import Any

#: The largest frame either side reads (64 MiB): a bigger length is a
#: protocol error, not an allocation.
MAX_FRAME = 64 << 20
#: Module name under which the requestor's ``__main__`` script is loaded on
#: the provider (its ``if __name__ == "__main__":`` block does not run).
MAIN_ALIAS = "_offload_main"
#: Largest object state (pickled) sent back after a call for failover.
MAX_STATE = 16 << 20

_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A frame or message that does not follow the wire format."""


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> bytes:
    """Read one frame; raise :class:`ProtocolError` when it is over ``limit``."""
    head = await reader.readexactly(_HEADER.size)
    (n,) = _HEADER.unpack(head)
    if n > limit:
        raise ProtocolError(f"frame of {n} bytes is over the {limit}-byte limit")
    return await reader.readexactly(n)


def write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    """Queue one frame on ``writer`` (the caller drains)."""
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"message of {len(payload)} bytes is over the {MAX_FRAME}-byte limit")
    writer.write(_HEADER.pack(len(payload)) + payload)


# ---------------------------------------------------------------------------
# Tagged JSON values
# ---------------------------------------------------------------------------


def to_wire(v: Any, depth: int = 0) -> Any:
    """Turn a Python value into tagged-JSON data; raise TypeError for what
    cannot travel (functions, open files, arbitrary objects)."""
    if depth > 100:
        raise TypeError("value nested more than 100 levels deep")
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"__t": "bytes", "b64": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, complex):
        return {"__t": "complex", "re": v.real, "im": v.imag}
    if isinstance(v, tuple):
        return {"__t": "tuple", "items": [to_wire(x, depth + 1) for x in v]}
    if isinstance(v, list):
        return [to_wire(x, depth + 1) for x in v]
    if isinstance(v, (set, frozenset)):
        return {"__t": "set", "items": [to_wire(x, depth + 1) for x in v]}
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v) and "__t" not in v:
            return {k: to_wire(x, depth + 1) for k, x in v.items()}
        return {"__t": "dict", "items": [[to_wire(k, depth + 1), to_wire(x, depth + 1)] for k, x in v.items()]}
    mod = type(v).__module__
    if mod == "numpy" or mod.startswith("numpy."):
        import numpy  # type: ignore  # the provider has it when the value is one

        if isinstance(v, numpy.ndarray):
            if v.dtype.hasobject:
                raise TypeError("a numpy array of Python objects cannot be sent back")
            a = numpy.ascontiguousarray(v)
            return {"__t": "ndarray", "dtype": a.dtype.str, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}
        if isinstance(v, numpy.generic):
            return to_wire(v.item(), depth + 1)
    raise TypeError(
        f"a value of type {type(v).__module__}.{type(v).__qualname__} cannot be sent back to the requestor; "
        "return plain data (None, bool, int, float, str, bytes, list, tuple, dict, set, complex or numpy arrays)"
    )


def from_wire(v: Any) -> Any:
    """Rebuild a value from tagged-JSON data; raise :class:`ProtocolError` on
    anything malformed. numpy arrays come back as numpy arrays when numpy is
    importable here, else as the tagged dict itself."""
    if isinstance(v, list):
        return [from_wire(x) for x in v]
    if not isinstance(v, dict):
        return v
    t = v.get("__t")
    if t is None:
        return {k: from_wire(x) for k, x in v.items()}
    try:
        if t == "bytes":
            return base64.b64decode(v["b64"], validate=True)
        if t == "tuple":
            return tuple(from_wire(x) for x in v["items"])
        if t == "set":
            return set(from_wire(x) for x in v["items"])
        if t == "complex":
            return complex(float(v["re"]), float(v["im"]))
        if t == "dict":
            return {from_wire(k): from_wire(x) for k, x in v["items"]}
        if t == "ndarray":
            return _array(v)
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(f"malformed {t!r} value: {e}") from None
    raise ProtocolError(f"unknown value tag {t!r}")


def _array(v: dict) -> Any:
    raw = base64.b64decode(v["b64"], validate=True)
    shape = [int(n) for n in v["shape"]]
    if any(n < 0 for n in shape):
        raise ProtocolError("negative array dimension")
    try:
        import numpy  # type: ignore
    except ImportError:
        return v
    dt = numpy.dtype(str(v["dtype"]))
    if dt.hasobject:
        raise ProtocolError("array of Python objects refused")
    count = 1
    for n in shape:
        count *= n
    if count * dt.itemsize != len(raw):
        raise ProtocolError(f"array of shape {shape} and dtype {dt.str} does not match its {len(raw)} bytes")
    return numpy.frombuffer(raw, dtype=dt).reshape(shape).copy()


def encode_reply(reply: dict) -> bytes:
    """Encode a provider reply (values already passed through :func:`to_wire`)."""
    return json.dumps(reply, separators=(",", ":")).encode()


def decode_reply(payload: bytes) -> dict:
    """Decode a provider reply; raise :class:`ProtocolError` when it is not a
    JSON object."""
    try:
        reply = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"reply is not JSON: {e}") from None
    if not isinstance(reply, dict):
        raise ProtocolError("reply is not a JSON object")
    return reply


# ---------------------------------------------------------------------------
# The provider side
# ---------------------------------------------------------------------------


class _Unpickler(pickle.Unpickler):
    """Loads the requestor's object, mapping its ``__main__`` to MAIN_ALIAS."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__":
            module = MAIN_ALIAS  # the requestor's script, loaded under that name
        return super().find_class(module, name)


def _loads(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()


def _dumps_state(obj: Any) -> bytes:
    # Classes of the requestor's script pickle as MAIN_ALIAS.X, which
    # _Unpickler finds on the next provider as well.
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _install_packages(session: str, manifest: dict) -> None:
    """Run again inside a venv of this session holding its pip packages,
    installed from the session's wheels only."""
    pkgs = manifest.get("pip_packages") or []
    if not pkgs or os.environ.get("OFFLOAD_PROXY_VENV"):
        return
    venv = "/tmp/offload-venv"
    wheels = os.path.join(session, "wheels")
    print(f"proxy: installing {', '.join(pkgs)} from the session's wheels into {venv}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", HOME="/tmp")
    r = subprocess.run(
        [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--no-index", "--find-links", wheels, *pkgs],
        env=env,
    )
    if r.returncode != 0:
        print(f"proxy: pip could not install {pkgs} from the session's wheels (exit {r.returncode})", file=sys.stderr, flush=True)
        sys.exit(3)
    os.environ["OFFLOAD_PROXY_VENV"] = venv
    py = os.path.join(venv, "bin", "python")
    os.execv(py, [py, *sys.argv])


def _load_code(session: str, manifest: dict) -> None:
    code = os.path.join(session, "code")
    sys.path.insert(0, code)
    main = manifest.get("main")
    if main:
        spec = importlib.util.spec_from_file_location(MAIN_ALIAS, os.path.join(code, main))
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load the requestor's script {main}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[MAIN_ALIAS] = mod
        spec.loader.exec_module(mod)


class _Session:
    """One object and its open generators, served to the requestor."""

    def __init__(self, obj: Any, token: bytes, keep_state: bool):
        self.obj = obj
        self.token = token
        self.keep_state = keep_state
        self.gens: dict[int, Any] = {}
        self.next_gen = 1
        self.lock = asyncio.Lock()
        self.state_hash = b""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = _loads(await read_frame(reader))
            if not isinstance(hello, dict) or not hmac.compare_digest(bytes(hello.get("token", b"")), self.token):
                write_frame(writer, encode_reply({"error": {"type": "PermissionError", "message": "bad session token", "traceback": ""}}))
                await writer.drain()
                return
            write_frame(writer, encode_reply({"ok": {"python": sys.version.split()[0], "pid": os.getpid()}}))
            await writer.drain()
            while True:
                req = _loads(await read_frame(reader))
                async with self.lock:
                    reply = await self.handle(req)
                try:
                    payload = encode_reply(reply)
                except (TypeError, ValueError) as e:
                    payload = encode_reply(_error(e))
                write_frame(writer, payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def handle(self, req: dict) -> dict:
        try:
            op = req["op"]
            if op == "call":
                value = await self.call(req["name"], req.get("args") or (), req.get("kwargs") or {})
            elif op == "getattr":
                value = getattr(self.obj, req["name"])
            elif op == "next":
                value = await self.next(int(req["gen"]), int(req.get("n", 1)))
            elif op == "close":
                gen = self.gens.pop(int(req["gen"]), None)
                if gen is not None:
                    r = gen.aclose() if inspect.isasyncgen(gen) else gen.close()
                    if inspect.isawaitable(r):
                        await r
                value = None
            else:
                raise ValueError(f"unknown operation {op!r}")
            reply = {"ok": to_wire(value)}
        except BaseException as e:  # the requestor's code may raise anything
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            return _error(e)
        if self.keep_state and req.get("op") == "call":
            self.attach_state(reply)
        return reply

    async def call(self, name: str, args: Any, kwargs: dict) -> Any:
        attr = getattr(self.obj, name)
        if not callable(attr):
            return attr  # a property or plain attribute
        result = attr(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            gid = self.next_gen
            self.next_gen += 1
            self.gens[gid] = result
            return {"__generator__": gid, "async": inspect.isasyncgen(result)}
        return result

    async def next(self, gid: int, n: int) -> Any:
        gen = self.gens.get(gid)
        if gen is None:
            raise KeyError(f"no open generator {gid}")
        items = []
        done = False
        for _ in range(max(1, min(n, 256))):
            try:
                item = await gen.__anext__() if inspect.isasyncgen(gen) else next(gen)
            except (StopIteration, StopAsyncIteration):
                done = True
                self.gens.pop(gid, None)
                break
            items.append(item)
        return {"items": items, "done": done}

    def attach_state(self, reply: dict) -> None:
        """Send the object's state back when it changed, so that the
        requestor can restart the session elsewhere from it."""
        try:
            state = _dumps_state(self.obj)
        except Exception as e:  # an object that cannot be pickled keeps no state
            reply["state_error"] = f"{type(e).__name__}: {e}"
            return
        h = hashlib.sha256(state).digest()
        if h == self.state_hash:
            return
        if len(state) > MAX_STATE:
            reply["state_error"] = f"state of {len(state)} bytes is over {MAX_STATE}"
            return
        self.state_hash = h
        reply["state"] = base64.b64encode(state).decode()


def _error(e: BaseException) -> dict:
    return {"error": {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc(limit=20)}}


async def _serve(session: _Session, port: int) -> None:
    server = await asyncio.start_server(session.serve, "0.0.0.0", port, limit=1 << 20)
    print(f"proxy: serving {type(session.obj).__qualname__} on port {port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    """Serve the session in directory argv[1] on TCP port argv[2]."""
    if len(argv) != 3:
        print("usage: _proxyserver.py SESSION_DIR PORT", file=sys.stderr)
        sys.exit(2)
    session, port = argv[1], int(argv[2])
    with open(os.path.join(session, "manifest.json")) as f:
        manifest = json.load(f)
    _install_packages(session, manifest)
    _load_code(session, manifest)
    with open(os.path.join(session, "object.pkl"), "rb") as f:
        obj = _loads(f.read())
    token = bytes.fromhex(manifest["token"])
    asyncio.run(_serve(_Session(obj, token, bool(manifest.get("keep_state", True))), port))


if __name__ == "__main__":
    main(sys.argv)

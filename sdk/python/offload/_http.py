"""HTTP to a node's local API through the standard library (http.client,
ssl): where the node is, its token, certificate pinning, JSON calls,
streamed bodies and server-sent events. Nothing here parses HTTP itself."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import pathlib
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, BinaryIO, Iterator, Optional, Tuple, Union

from .errors import FingerprintError, NoNodeError, OffloadError, TaskTimeoutError, error_for_status

#: Environment variable pinning the API's certificate (as the Go client).
FINGERPRINT_ENV = "OFFLOAD_API_FINGERPRINT"

PathLike = Union[str, "os.PathLike[str]"]


def parse_fingerprint(s: str) -> bytes:
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


def default_home() -> pathlib.Path:
    """$OFFLOAD_HOME, else ~/.offload."""
    return pathlib.Path(os.environ.get("OFFLOAD_HOME") or pathlib.Path.home() / ".offload")


class Stream:
    """An open streaming answer (server-sent events, a file's bytes). Close
    it to end the stream; close() may be called from another thread to
    unblock a reader."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str):
        self._conn = conn
        self.resp = resp
        self.url = url
        self._closed = False

    def settimeout(self, seconds: Optional[float]) -> None:
        """Bounds the next reads (None: wait as long as it takes)."""
        if self._conn.sock is not None:
            self._conn.sock.settimeout(seconds)

    def read(self, n: int = 256 << 10) -> bytes:
        """The next piece of the body, b"" at its end."""
        try:
            return self.resp.read1(n) if n else self.resp.read()
        except (OSError, http.client.HTTPException, ValueError) as e:
            if self._closed:
                return b""
            if isinstance(e, socket.timeout):
                raise
            raise NoNodeError(f"the node at {self.url} broke the stream: {e}") from e

    def events(self) -> Iterator[Tuple[str, str, str]]:
        """Yields server-sent events as (event, data, id) until the stream
        ends; comment lines (keep-alives) are skipped."""
        event, data, eid = "message", [], ""
        while True:
            try:
                raw = self.resp.readline()
            except (OSError, http.client.HTTPException, ValueError) as e:
                if self._closed:
                    return
                if isinstance(e, socket.timeout):
                    raise
                raise NoNodeError(f"the node at {self.url} broke the event stream: {e}") from e
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if data:
                    yield event, "\n".join(data), eid
                event, data = "message", []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                eid = value

    def close(self) -> None:
        """Ends the stream (from any thread)."""
        if self._closed:
            return
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.resp.close()
        except Exception:  # noqa: BLE001 - closing a broken response
            pass
        self._conn.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Transport:
    """Finds the node (``$home/api``, ``$home/api.token``, the pin) and
    makes requests to it, one connection per request (the node is local;
    this keeps every call independent and thread-safe)."""

    def __init__(self, home: Optional[PathLike] = None, url: Optional[str] = None, token: Optional[str] = None,
                 fingerprint: Optional[str] = None, timeout: Optional[float] = 300.0):
        self.home = pathlib.Path(home) if home else default_home()
        self._given = (url.rstrip("/") if url else None, token, parse_fingerprint(fingerprint) if fingerprint else None)
        self.url, self.token, self.pin = self._given
        self.timeout = timeout
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drops what was read from the home (a restarted node writes a new
        URL and maybe a new token)."""
        with self._lock:
            self.url, self.token, self.pin = self._given

    def locate(self) -> Tuple[str, str, Optional[bytes]]:
        with self._lock:
            if self.url is None:
                try:
                    self.url = (self.home / "api").read_text().strip().rstrip("/")
                except FileNotFoundError:
                    raise NoNodeError(
                        f"no offload node is running for home {self.home}: start one with "
                        f"`offload node --home {self.home}` (add --provider to sell compute)") from None
            if self.token is None:
                try:
                    self.token = (self.home / "api.token").read_text().strip()
                except FileNotFoundError:
                    raise NoNodeError(f"no API token in {self.home / 'api.token'}: is the node's home right?") from None
            if self.pin is None:
                pin = os.environ.get(FINGERPRINT_ENV)
                if not pin:
                    try:
                        pin = (self.home / "api.fingerprint").read_text()
                    except FileNotFoundError:
                        pin = None
                if pin and pin.strip():
                    self.pin = parse_fingerprint(pin)
            return self.url, self.token, self.pin

    def _connect(self, timeout: Optional[float]) -> Tuple[http.client.HTTPConnection, urllib.parse.SplitResult, str]:
        url, _, pin = self.locate()
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https"):
            raise OffloadError(0, f"unsupported API URL {url!r} (want http:// or https://HOST:PORT)")
        host = u.hostname or "127.0.0.1"
        conn: http.client.HTTPConnection
        if u.scheme == "https":
            ctx = ssl.create_default_context()
            if pin is not None:
                # The pin, checked below before anything is sent, replaces
                # the authorities and the host name (a node's self-signed
                # certificate has neither).
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, u.port or 443, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, u.port or 80, timeout=timeout)
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as e:
            conn.close()
            raise OffloadError(0, f"the API certificate at {url} is not trusted (pin the node's self-signed "
                                  f"certificate: fingerprint= or ${FINGERPRINT_ENV}, from its "
                                  f"$OFFLOAD_HOME/api.fingerprint): {e}") from e
        except OSError as e:
            conn.close()
            raise NoNodeError(f"no offload node answers at {url} (is it still running? start one with "
                              f"`offload node`): {e}") from e
        if u.scheme == "https" and pin is not None:
            der = conn.sock.getpeercert(binary_form=True) or b""  # type: ignore[union-attr]
            got = hashlib.sha256(der).digest()
            if got != pin:
                conn.close()
                raise FingerprintError(f"the API certificate at {url} does not match the pinned fingerprint: "
                                       f"it presented sha256:{got.hex()}, pinned sha256:{pin.hex()}")
        return conn, u, url

    def open(self, method: str, path: str, body: Union[bytes, BinaryIO, None] = None,
             content_type: Optional[str] = None, length: Optional[int] = None, accept: Optional[str] = None,
             timeout: Optional[float] = -1.0) -> Stream:
        """Sends a request and returns the open answer; an error status
        raises the matching OffloadError with the node's message. timeout
        -1 means the transport's default; None waits without limit."""
        if timeout is not None and timeout < 0:
            timeout = self.timeout
        conn, u, url = self._connect(timeout)
        _, token, _ = self.locate()
        headers = {"Authorization": f"Bearer {token}"}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        if body is not None and not isinstance(body, (bytes, bytearray)):
            if length is None:
                raise ValueError("a streamed body needs its length")
            headers["Content-Length"] = str(length)
        elif body is None and method in ("POST", "PUT"):
            headers["Content-Length"] = "0"
        try:
            conn.request(method, u.path.rstrip("/") + path, body=body, headers=headers)
            resp = conn.getresponse()
        except socket.timeout as e:
            conn.close()
            raise TaskTimeoutError(f"{method} {path}: the node at {url} did not answer within {timeout} s") from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise NoNodeError(f"the node at {url} closed the connection: {e}") from e
        if resp.status >= 300:
            raw = resp.read()
            conn.close()
            try:
                msg = json.loads(raw).get("error") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                msg = raw.decode(errors="replace").strip()
            raise error_for_status(resp.status, msg)
        return Stream(conn, resp, url)

    def call(self, method: str, path: str, payload: Any = None, timeout: Optional[float] = -1.0) -> Any:
        """A JSON request and its decoded JSON answer (None when empty)."""
        body = json.dumps(payload).encode() if payload is not None else None
        with self.open(method, path, body, "application/json" if body is not None else None,
                       timeout=timeout) as s:
            try:
                raw = s.resp.read()
            except socket.timeout as e:
                raise TaskTimeoutError(f"{method} {path}: no answer within {timeout} s") from e
        return json.loads(raw) if raw else None


def quote(s: str) -> str:
    """One path segment."""
    return urllib.parse.quote(s, safe="")


def deadline_left(deadline: Optional[float]) -> Optional[float]:
    """Seconds left until a time.monotonic() deadline (None: no limit)."""
    if deadline is None:
        return None
    return max(0.001, deadline - time.monotonic())

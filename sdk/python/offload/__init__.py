"""offload: a Python client for an offload node, standard library only.

It talks to a running node's local HTTP API (GET /openapi.json on the node
describes it) through ``http.client``. :class:`Client` makes every call
blocking; :class:`AsyncClient` makes the same calls as coroutines::

    import offload

    c = offload.Client()                       # $OFFLOAD_HOME or ~/.offload
    c.initiate_connection(timeout=10)
    res = c.run("hello:1", ["echo", "hi"], check=True)
    print(res["stdout"])

    async def main():
        ac = offload.AsyncClient()
        res = await ac.run("hello:1", ["echo", "hi"])

The calls users know from other systems live in one module per system,
each a thin layer over the same client:

- :mod:`offload.mecanywhere`: ``initiate_connection``, ``offload_task``,
  ``join``, ``disconnect`` (also methods of both clients);
- :mod:`offload.dphi`: DPhi Space's EM API (``uplink``, ``run``,
  ``pod_status``, ``image_build``, ...);
- :mod:`offload.hwf`: HWF's ``Task``/``Stage``/``Hub``;
- :mod:`offload.golem`: Golem's task API (``Golem.execute_tasks``,
  ``Task.accept_result``/``reject_result``);
- :mod:`offload.remotemedia`: RemoteMedia's ``RemoteProxyClient`` and
  ``create_proxy`` (an object's methods run on a provider).

How ``data`` reaches a task (``offload_task``, ``run``): text of at most
16 KiB (after JSON encoding for anything that is not ``str``) goes in the
task's environment as ``OFFLOAD_DATA``. Bytes, larger text, or a
``pathlib.Path`` are added to the node as content and mounted read-only
under ``/inputs/data``; the task finds the file's path in
``OFFLOAD_DATA_PATH`` (``data_path(runtime)`` says it in advance). WASM
tasks can mount only directories, so there the file is wrapped in one,
``/inputs/data/data``.

Content (``uplink``, ``add``, ``data``) is private by default: the node
serves it only to the providers of the tasks that use it;
``add(path, public=True)`` or ``publish(cid)`` publishes it. Directories
are added and written by the node itself, so they must be on the node's
machine (as a local node is).

Errors are :class:`OffloadError` subclasses (see :mod:`offload.errors`).
Needs Python 3.9 or later.
"""

from .aio import AsyncClient
from .client import (DATA_ENV, DATA_MOUNT, DATA_PATH_ENV, MAX_INLINE_DATA, TERMINAL_STATES, Client, data_path,
                     parse_size)
from .errors import (BadRequestError, BusyError, ConflictError, FingerprintError, ForbiddenError, NoNodeError,
                     NoProviderError, NotFoundError, OffloadError, TaskFailedError, TaskTimeoutError,
                     UnauthorizedError)
from ._http import FINGERPRINT_ENV

__version__ = "0.2.0"

__all__ = [
    "Client", "AsyncClient", "OffloadError", "NoNodeError", "FingerprintError", "BadRequestError",
    "UnauthorizedError", "ForbiddenError", "NotFoundError", "ConflictError", "BusyError", "TaskFailedError",
    "NoProviderError", "TaskTimeoutError", "TERMINAL_STATES", "DATA_ENV", "DATA_PATH_ENV", "DATA_MOUNT",
    "MAX_INLINE_DATA", "FINGERPRINT_ENV", "data_path", "parse_size",
]

from .remotemedia import RemoteExecutorConfig, RemoteProxyClient, create_proxy  # noqa: E402

__all__ += ["RemoteExecutorConfig", "RemoteProxyClient", "create_proxy"]

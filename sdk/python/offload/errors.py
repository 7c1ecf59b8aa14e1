"""The exceptions of the offload client.

Every error the package raises on purpose is an :class:`OffloadError`. The
node's HTTP answers map to subclasses by status (400 :class:`BadRequestError`,
401 :class:`UnauthorizedError`, 403 :class:`ForbiddenError`, 404
:class:`NotFoundError`, 409 :class:`ConflictError`, 429 and 503
:class:`BusyError`); a task that did not complete raises
:class:`TaskFailedError` (or :class:`NoProviderError` when no provider took
it) where a call promises a completed task; a wait that runs out raises
:class:`TaskTimeoutError`. Each keeps the node's own message, which says why.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Optional, Tuple, Type

__all__ = [
    "OffloadError", "NoNodeError", "FingerprintError", "BadRequestError", "UnauthorizedError",
    "ForbiddenError", "NotFoundError", "ConflictError", "BusyError", "TaskFailedError",
    "NoProviderError", "TaskTimeoutError", "error_for_status", "error_for_task",
]


class OffloadError(Exception):
    """An error of the node or of the client.

    ``status`` is the node's HTTP status (0 when the node did not answer or
    the error is the client's own) and ``message`` the node's explanation.
    """

    def __init__(self, status: int, message: str):
        super().__init__(f"node answered {status}: {message}" if status else message)
        self.status = status
        self.message = message


class NoNodeError(OffloadError, ConnectionError):
    """No node runs for the home, or it does not answer."""

    def __init__(self, message: str):
        super().__init__(0, message)


class FingerprintError(OffloadError):
    """The API's TLS certificate is not the pinned one (nothing was sent)."""

    def __init__(self, message: str):
        super().__init__(0, message)


class BadRequestError(OffloadError, ValueError):
    """The node refused the request as malformed or invalid (400): a bad
    task spec, a size below what the node holds, a bad path."""


class UnauthorizedError(OffloadError, PermissionError):
    """The bearer token was refused (401): the home's api.token belongs to
    another node, or the node was re-initialised."""


class ForbiddenError(OffloadError, PermissionError):
    """The node or a provider refused the operation (403)."""


class NotFoundError(OffloadError, LookupError):
    """No such task, content, volume, tunnel or route (404)."""


class ConflictError(OffloadError):
    """The operation does not fit the task's state (409): canceling a task
    that ended, tunnelling into a task that is not running."""


class BusyError(OffloadError):
    """The node or provider has no room now (429, 503); trying later can
    help."""


class TaskFailedError(OffloadError):
    """A task ended without completing. ``task`` is its final status (the
    same dict as ``status``), ``state`` its state ("failed" or "canceled")
    and the message says why (the node's ``error``/``reason``)."""

    def __init__(self, task: Mapping[str, Any], message: Optional[str] = None):
        self.task = dict(task)
        self.state = self.task.get("state", "")
        why = self.task.get("error") or self.task.get("reason") or self.state
        if self.task.get("exit_code") not in (None, 0) and "exit code" not in why:
            why += f" (exit code {self.task.get('exit_code')})"
        super().__init__(0, message or f"task {self.task.get('id', '?')} {self.state}: {why}")


class NoProviderError(TaskFailedError, BusyError):
    """No provider took the task: none matches its requirements, none is
    reachable, or every one that could was busy or excluded."""


# Before Python 3.11 asyncio.TimeoutError is a class of its own: a timeout
# is both, so that code catching either sees it.
_TIMEOUTS: Tuple[Type[BaseException], ...] = (TimeoutError,) if asyncio.TimeoutError is TimeoutError else (
    TimeoutError, asyncio.TimeoutError)


class TaskTimeoutError(OffloadError, *_TIMEOUTS):  # type: ignore[misc]
    """A wait ran out before the task ended (the task itself goes on
    unless the call says it cancels it). It is a TimeoutError (and an
    asyncio.TimeoutError)."""

    def __init__(self, message: str, task_id: str = ""):
        super().__init__(0, message)
        self.task_id = task_id


_BY_STATUS = {400: BadRequestError, 401: UnauthorizedError, 403: ForbiddenError, 404: NotFoundError,
              409: ConflictError, 429: BusyError, 503: BusyError}

#: Phrases of the node's reasons that mean no provider took a task.
_NO_PROVIDER = ("no provider", "known providers failed or are excluded", "is not reachable on the task topic",
                "none answered")


def error_for_status(status: int, message: str) -> OffloadError:
    """The exception for an error answer of the node."""
    return _BY_STATUS.get(status, OffloadError)(status, message)


def error_for_task(task: Mapping[str, Any]) -> TaskFailedError:
    """The exception for a task that ended without completing:
    NoProviderError when no provider took it, else TaskFailedError."""
    why = (task.get("error") or "") + " " + (task.get("reason") or "")
    if task.get("state") == "failed" and not task.get("executions") and any(p in why for p in _NO_PROVIDER):
        return NoProviderError(task)
    return TaskFailedError(task)

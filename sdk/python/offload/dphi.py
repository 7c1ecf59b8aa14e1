"""DPhi Space's EM API on offload: pod volumes, images, pod runs.

DPhi's EM API client is a module of functions (uplink, downlink,
files_list, delete, image_build, image_load, image_list, run, pod_status);
this module keeps their names, arguments and storage model on an offload
node::

    from offload import dphi

    dphi.uplink(["./simple-echo/Dockerfile", "./simple-echo/echo-test.sh"], dest_path="echo-test")
    dphi.image_build("./echo-test/Dockerfile", "echo-test", "./echo-test")
    dphi.run("echo-test", node="MPU", max_duration=1, command="/bin/sh",
             args=["-c", "date > /data/time.txt"])
    print(dphi.pod_status())
    dphi.downlink("time.txt")

The storage model is DPhi's: each ``pod_name`` is a persistent private
volume ("" is the default pod, ``default``), mounted at ``/data`` in every
run of that pod; files uplinked to a pod are visible to its runs, and what
a run writes to ``/data`` can be listed, downlinked and deleted. Here a
pod's volume is one of the node's portable volumes (``offload volume ls``):
it follows the requestor from provider to provider by CID, and it is
updated only by a run that exits 0. Files uplinked (or deleted) since the
pod's last run are staged as content on the node and become the volume at
the pod's next run.

Mapping and choices:

- ``node`` picks the hardware: ``"MPU"`` (the main processor; the default
  here, any provider), ``"GPU"`` (the run gets one GPU, so only providers
  with a free GPU bid), ``"FPGA"`` (providers labelled ``fpga=...``, e.g.
  ``offload node --provider --labels fpga=xilinx``); any other name
  selects providers with that label (lower case). The run requires the
  label (the task's ``labels``: ``{"fpga": "*"}``), so providers without it
  never take it, even ones the node learns of later; when none the node
  knows qualifies, or every one that does is busy, ProviderBusyError at
  once.
- ``image`` is a name from ``image_list()`` (kept by this module in
  ``$OFFLOAD_HOME/dphi.json``, next to the node's ``api`` file, as name ->
  CID), an image CID, or else a Docker reference the providers hold.
- ``image_build(dockerfile, image, context)`` takes paths in the pod's
  volume (as DPhi does), else local paths; the image is built on a provider
  offering builds (``offload node --provider --build``) with no network, and
  its CID is recorded under ``image``.
- ``image_load(tarfile, image)`` reads a ``docker save`` tarball from the
  pod's volume (else a local path), checks it holds ``image``, and records
  its CID.
- ``run`` returns once the pod is stored (``wait=True`` waits for it to
  end); ``max_duration`` is in minutes; ``command`` is split like a shell
  and ``args`` appended; ``envs`` become the environment; ``ports`` make
  the pod a service reachable by its ``pod_name`` from the user's other
  pods of the same ``namespace`` (``namespace_create``);
  ``scheduled_time`` (ISO 8601 with a timezone) holds it until then.
- ``pod_status(pod_name)`` reports the pod's latest run with a Kubernetes
  phase (Pending, Running, Succeeded, Failed) beside offload's state, its
  exit code, output and the reason it waits or failed.

Errors are DPhiError subclasses: MissingFileError (a file not in the
volume or on disk; also a FileNotFoundError), BadContextError (a build
context or Dockerfile that is missing or refused), MissingImageError (an
image that is not in the tarball, or not known), ProviderBusyError (no
provider of that node kind, or all busy), BuildFailedError (the build ran
and failed), NamespaceNotFoundError. Every message says what to do.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import pathlib
import re
import shlex
import shutil
import tarfile as _tarfile
import tempfile
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from ._http import PathLike
from .client import TERMINAL_STATES, Client
from .errors import BadRequestError, BusyError, NoProviderError, NotFoundError, OffloadError, TaskFailedError

__all__ = [
    "EMClient", "uplink", "downlink", "files_list", "delete", "image_build", "image_load", "image_list", "run",
    "pod_status", "namespace_create", "DPhiError", "MissingFileError", "BadContextError", "MissingImageError",
    "ProviderBusyError", "BuildFailedError", "NamespaceNotFoundError", "DEFAULT_POD", "DATA_PATH", "STATE_FILE",
]

#: The pod of calls that name none.
DEFAULT_POD = "default"
#: Where a pod's volume is mounted.
DATA_PATH = "/data"
#: The module's state in the node's home: image names, staged volumes,
#: namespaces.
STATE_FILE = "dphi.json"
#: The prefix of a pod run's task name.
POD_TASK_PREFIX = "dphi-"

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_CID = re.compile(r"^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{20,})$")


class DPhiError(OffloadError):
    """An EM API call that could not be done; the message says why."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(status, message)


class MissingFileError(DPhiError, FileNotFoundError):
    """A file is not in the pod's volume (or not on this machine)."""


class BadContextError(DPhiError, ValueError):
    """A build context or Dockerfile is missing, or the node refused it."""


class MissingImageError(DPhiError, LookupError):
    """An image is not in the tarball, not known, or no provider holds it."""


class ProviderBusyError(DPhiError, BusyError):
    """No provider of the node kind asked for is known, or all are busy."""


class BuildFailedError(DPhiError):
    """An image build ran on a provider and failed; ``task`` is its status."""

    def __init__(self, message: str, task: Optional[Mapping[str, Any]] = None):
        super().__init__(message)
        self.task = dict(task or {})


class NamespaceNotFoundError(DPhiError, LookupError):
    """A run names a namespace that namespace_create did not create."""


def _pod(pod_name: Optional[str]) -> str:
    name = pod_name or DEFAULT_POD
    if not _NAME.match(name):
        raise DPhiError(f"pod_name {name!r}: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def _rel(path: str, what: str = "filepath") -> str:
    """A path inside a volume, relative and clean ("./a/b", "/a/b" -> "a/b")."""
    parts = [p for p in pathlib.PurePosixPath(path).parts if p not in ("/", ".")]
    if any(p == ".." for p in parts):
        raise DPhiError(f"{what} {path!r} leaves the volume")
    return "/".join(parts)


def _phase(state: str) -> str:
    return {"completed": "Succeeded", "failed": "Failed", "canceled": "Failed", "running": "Running",
            "verifying": "Running"}.get(state, "Pending")


def _utc_ms(when: Union[str, _dt.datetime]) -> int:
    if isinstance(when, str):
        s = when.strip()
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        try:
            when = _dt.datetime.fromisoformat(s)
        except ValueError:
            raise DPhiError(f"scheduled_time {when!r}: want ISO 8601 with a timezone, e.g. "
                            f"2025-05-22T12:10:00+02:00") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp() * 1000)


class EMClient:
    """DPhi's EM API over one offload node (``home``, default
    $OFFLOAD_HOME, or a ``client``). The module-level functions use a
    default EMClient."""

    def __init__(self, home: Optional[PathLike] = None, client: Optional[Client] = None):
        self.client = client or Client(home=home)
        self._cache = pathlib.Path(tempfile.mkdtemp(prefix="dphi-"))
        self._views: Dict[str, pathlib.Path] = {}

    def close(self) -> None:
        """Removes the local copies of volumes this client made."""
        shutil.rmtree(self._cache, ignore_errors=True)

    def __enter__(self) -> "EMClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            shutil.rmtree(self._cache, ignore_errors=True)

    # --- state: dphi.json in the node's home ---------------------------------

    @contextlib.contextmanager
    def _state(self, write: bool = False) -> Iterator[Dict[str, Any]]:
        path = self.client.home / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(str(path) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                st = json.loads(path.read_text()) if path.exists() else {}
            except ValueError:
                st = {}
            for k in ("images", "pods", "namespaces"):
                st.setdefault(k, {})
            yield st
            if write:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(json.dumps(st, indent=2, sort_keys=True))
                os.chmod(tmp, 0o600)
                os.replace(tmp, path)

    # --- volumes --------------------------------------------------------------

    def _volume_cid(self, pod: str) -> str:
        for v in self.client.volumes():
            if v.get("name") == pod:
                return v.get("cid") or ""
        return ""

    def _current(self, pod: str) -> str:
        """The pod's content now: what was staged since its last run, else
        the node's volume ("" for an empty or new pod)."""
        node = self._volume_cid(pod)
        with self._state() as st:
            staged = st["pods"].get(pod) or {}
        if staged.get("cid") and staged.get("base", "") == node:
            return staged["cid"]
        return node

    def _view(self, cid: str) -> pathlib.Path:
        """A local read-only copy of a volume's content."""
        if not cid:
            d = self._cache / "empty"
            d.mkdir(exist_ok=True)
            return d
        if cid not in self._views:
            dest = self._cache / cid
            if not dest.exists():
                self.client.downlink(cid, dest)
            if dest.is_file():  # a single file is not a volume: wrap it
                raise DPhiError(f"volume content {cid} is a file, not a directory")
            self._views[cid] = dest
        return self._views[cid]

    def _stage(self, pod: str, base_cid: str, new_dir: pathlib.Path) -> str:
        """Makes new_dir the pod's content until its next run."""
        node = self._volume_cid(pod)
        cid = self.client.add(new_dir)
        with self._state(write=True) as st:
            old = (st["pods"].get(pod) or {}).get("cid")
            st["pods"][pod] = {"cid": cid, "base": node, "staged_at": int(time.time())}
            held = {p.get("cid") for p in st["pods"].values()}
        # Release the content staged before, unless a volume or another
        # pod still holds it (identical content has one CID).
        if old and old not in held and old not in {v.get("cid") for v in self.client.volumes()}:
            with contextlib.suppress(OffloadError):
                self.client.unpin(old)
        return cid

    def _edit(self, pod: str) -> "tuple[str, pathlib.Path]":
        """A writable copy of the pod's current content."""
        cur = self._current(pod)
        work = pathlib.Path(tempfile.mkdtemp(prefix="edit-", dir=self._cache))
        shutil.copytree(self._view(cur), work / "v", symlinks=True)
        return cur, work / "v"

    # --- files ----------------------------------------------------------------

    def uplink(self, filepaths: Union[PathLike, Sequence[PathLike]], dest_path: str = "",
               pod_name: str = "") -> Dict[str, Any]:
        """Uploads files into the pod's volume, under dest_path (a folder
        relative to the volume's root); a directory is uploaded whole."""
        pod = _pod(pod_name)
        paths = [pathlib.Path(filepaths)] if isinstance(filepaths, (str, os.PathLike)) else [pathlib.Path(p) for p in filepaths]
        for p in paths:
            if not p.exists():
                raise MissingFileError(f"uplink: {p} does not exist on this machine")
        base, work = self._edit(pod)
        try:
            dest = work / _rel(dest_path, "dest_path") if dest_path else work
            dest.mkdir(parents=True, exist_ok=True)
            size = 0
            for p in paths:
                target = dest / p.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                if p.is_dir():
                    shutil.copytree(p, target)
                    size += sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
                else:
                    shutil.copyfile(p, target)
                    size += target.stat().st_size
            self._stage(pod, base, work)
        finally:
            shutil.rmtree(work.parent, ignore_errors=True)
        return {"message": "Successfully uplinked files",
                "data": {"file_count": len(paths), "total_size_kb": round(size / 1024, 3), "pod_name": pod}}

    def files_list(self, pod_name: str = "") -> Dict[str, Any]:
        """The files in the pod's volume: path (relative to /data), size in
        bytes."""
        pod = _pod(pod_name)
        root = self._view(self._current(pod))
        files = [{"path": f.relative_to(root).as_posix(), "size_bytes": f.stat().st_size}
                 for f in sorted(root.rglob("*")) if f.is_file()]
        return {"pod_name": pod, "files": files, "file_count": len(files)}

    def downlink(self, filepath: str, downlink_folder: PathLike = "downlink/", pod_name: str = "") -> Dict[str, Any]:
        """Copies a file (or folder) of the pod's volume into
        downlink_folder; returns filename, local_path and size_bytes."""
        pod = _pod(pod_name)
        rel = _rel(filepath)
        src = self._view(self._current(pod)) / rel
        if not rel or not src.exists():
            raise MissingFileError(f"downlink: {filepath!r} is not in pod {pod!r}'s volume (files_list(pod_name="
                                   f"{pod_name!r}) lists it)")
        folder = pathlib.Path(downlink_folder)
        folder.mkdir(parents=True, exist_ok=True)
        local = folder / src.name
        if src.is_dir():
            if local.exists():
                shutil.rmtree(local)
            shutil.copytree(src, local)
            size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
        else:
            shutil.copyfile(src, local)
            size = local.stat().st_size
        return {"filename": src.name, "local_path": str(local), "size_bytes": size}

    def delete(self, filepath: str, pod_name: str = "") -> Dict[str, Any]:
        """Deletes a file or folder from the pod's volume."""
        pod = _pod(pod_name)
        rel = _rel(filepath)
        base, work = self._edit(pod)
        try:
            target = work / rel
            if not rel or not (target.exists() or target.is_symlink()):
                raise MissingFileError(f"delete: {filepath!r} is not in pod {pod!r}'s volume")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
            self._stage(pod, base, work)
        finally:
            shutil.rmtree(work.parent, ignore_errors=True)
        return {"message": f"Deleted {filepath}", "pod_name": pod}

    # --- images ---------------------------------------------------------------

    def _find(self, path: str, pod: str) -> Optional[pathlib.Path]:
        """A path in the pod's volume ("." is its root), else on this
        machine."""
        try:
            p = self._view(self._current(pod)) / _rel(path)
            if p.exists():
                return p
        except DPhiError:
            pass
        local = pathlib.Path(path).expanduser()
        return local.resolve() if local.exists() else None

    def _record_image(self, image: str, cid: str, source: str) -> None:
        with self._state(write=True) as st:
            st["images"][image] = {"cid": cid, "source": source, "created": int(time.time())}

    def image_build(self, dockerfile: str, image: str, context: str = ".", pod_name: str = "",
                    timeout: float = 600, memory: Union[int, str, None] = None,
                    build_args: Optional[Mapping[str, Any]] = None, network: bool = False) -> Dict[str, Any]:
        """Builds an image on a provider from a Dockerfile and context in
        the pod's volume (else on this machine) and records it as image;
        waits for the build (timeout seconds) and returns image, cid and
        task_id. RUN steps have no network unless network=True, which asks
        for a provider that allows it (``offload node --build-network``)."""
        pod = _pod(pod_name)
        ctx = self._find(context, pod)
        if ctx is None or not ctx.is_dir():
            raise BadContextError(f"image_build: context {context!r} is not a folder in pod {pod!r}'s volume nor "
                                  f"on this machine (uplink it first)")
        df = self._find(dockerfile, pod)
        if df is None:
            cand = ctx / dockerfile
            df = cand if cand.is_file() else None
        if df is None or not df.is_file():
            raise BadContextError(f"image_build: Dockerfile {dockerfile!r} is not in pod {pod!r}'s volume, in the "
                                  f"context {context!r}, nor on this machine")
        with tempfile.TemporaryDirectory(prefix="dphi-build-") as tmp:
            try:
                rel_df = df.resolve().relative_to(ctx.resolve()).as_posix()
                build_ctx = ctx
            except ValueError:  # the Dockerfile is outside the context: bring it in
                build_ctx = pathlib.Path(tmp) / "context"
                shutil.copytree(ctx, build_ctx, symlinks=True)
                rel_df = ".dphi.Dockerfile"
                shutil.copyfile(df, build_ctx / rel_df)
            try:
                task = self.client.build_image(build_ctx, rel_df, tag=f"dphi image {image}", timeout=timeout,
                                               memory=memory, build_args=build_args, network=network)
            except BadRequestError as e:
                raise BadContextError(f"image_build: {e.message}", e.status) from None
            except NotFoundError as e:
                raise DPhiError(f"image_build: this node cannot build images ({e.message}); update it", e.status) from None
        try:
            done = self.client.wait(task["id"], timeout=timeout + 120, check=True)
        except NoProviderError as e:
            raise ProviderBusyError(f"image_build: no provider builds images now (providers offer builds with "
                                    f"`offload node --provider --build`): {e.task.get('error') or e.task.get('reason')}") from None
        except TaskFailedError as e:
            raise BuildFailedError(f"image_build: building {image!r} failed: {e.task.get('error')}\n"
                                   f"{e.task.get('stderr', '')}".rstrip(), e.task) from None
        cid = done.get("image") or done.get("outputs")
        if not cid:
            raise BuildFailedError(f"image_build: the build of {image!r} returned no image", done)
        self._record_image(image, cid, "build")
        return {"message": "Image built", "image": image, "cid": cid, "task_id": task["id"]}

    def image_load(self, tarfile: str, image: str, pod_name: str = "") -> Dict[str, Any]:
        """Loads a ``docker save`` tarball from the pod's volume (else this
        machine) as image; the tarball must hold that image name."""
        pod = _pod(pod_name)
        path = self._find(tarfile, pod)
        if path is None or not path.is_file():
            raise MissingFileError(f"image_load: {tarfile!r} is not in pod {pod!r}'s volume nor on this machine")
        tags = _tar_tags(path)
        want = image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"
        if want not in tags and image not in tags:
            raise MissingImageError(f"image_load: {tarfile!r} does not hold image {image!r} (it holds "
                                    f"{sorted(tags) or 'no tagged image'}); name the image as it was tagged "
                                    f"before `docker save`")
        cid = self.client.add(path)
        self._record_image(image, cid, "load")
        return {"message": "Image loaded", "image": image, "cid": cid}

    def image_list(self) -> List[Dict[str, Any]]:
        """The images built or loaded through this module: image, cid,
        source ("build" or "load"), created (unix seconds)."""
        with self._state() as st:
            return [{"image": k, **v} for k, v in sorted(st["images"].items())]

    def _resolve_image(self, image: str) -> str:
        with self._state() as st:
            rec = st["images"].get(image)
        if rec:
            return rec["cid"]
        if _CID.match(image):
            return image
        if not image:
            raise MissingImageError("run: no image (image_list() lists what image_build and image_load made)")
        return image  # a reference the providers hold

    # --- pods -----------------------------------------------------------------

    def namespace_create(self, namespace: str) -> Dict[str, Any]:
        """Creates a namespace: pods of one namespace with ports reach each
        other by pod_name."""
        if not _NAME.match(namespace or ""):
            raise DPhiError(f"namespace {namespace!r}: want 1-63 letters, digits, '.', '_' or '-'")
        with self._state(write=True) as st:
            created = namespace not in st["namespaces"]
            st["namespaces"].setdefault(namespace, {"created": int(time.time())})
        return {"message": "Namespace created" if created else "Namespace exists", "namespace": namespace}

    def _node_filter(self, node: Optional[str], spec: Dict[str, Any]) -> None:
        kind = (node or "MPU").strip()
        if kind.upper() in ("MPU", "CPU", "ANY", ""):
            return
        known = self.client.pool()
        if kind.upper() == "GPU":
            spec.setdefault("resources", {})["gpus"] = 1
            fit = [p for p in known if (p.get("hardware") or {}).get("gpus")]
            what = "a GPU"
        else:
            label = kind.lower()
            spec.setdefault("labels", {})[label] = "*"
            fit = [p for p in known if label in ((p.get("hardware") or {}).get("labels") or {})]
            what = f"the label {label}=... (offload node --provider --labels {label}=...)"
        if not fit:
            raise ProviderBusyError(f"run: no provider this node knows offers node {kind!r}: none has {what} "
                                    f"({len(known)} known)")
        if not any((p.get("free") or {}).get("cpus", 1) > 0 for p in fit):
            raise ProviderBusyError(f"run: every provider with node {kind!r} is busy ({len(fit)} known); try later")

    def run(self, image: str, node: Optional[str] = "MPU", max_duration: float = 1, command: Union[str, Sequence[str], None] = "",
            args: Optional[Sequence[Any]] = None, envs: Optional[Mapping[str, Any]] = None,
            scheduled_time: Union[str, _dt.datetime, None] = None, pod_name: Optional[str] = None,
            ports: Optional[Sequence[int]] = None, namespace: Optional[str] = None, wait: bool = False,
            runtime: Optional[str] = None) -> Dict[str, Any]:
        """Runs a DPhi Pod: image on a provider of the node kind, at most
        max_duration minutes, with the pod's volume at /data. Returns
        {"message", "pod_name", "task_id", "status"} once stored, or with
        wait=True the final pod_status (ProviderBusyError or
        MissingImageError when no provider could run it)."""
        pod = _pod(pod_name)
        spec: Dict[str, Any] = {"image": self._resolve_image(image), "name": POD_TASK_PREFIX + pod,
                                "timeout_ms": int(float(max_duration) * 60_000)}
        if runtime:
            spec["runtime"] = runtime
        cmd = shlex.split(command) if isinstance(command, str) else [str(c) for c in (command or [])]
        if args:
            cmd += [str(a) for a in args]
        if cmd:
            spec["cmd"] = cmd
        if envs:
            spec["env"] = {str(k): str(v) for k, v in envs.items()}
        if scheduled_time:
            spec["not_before"] = _utc_ms(scheduled_time)
        if ports:
            spec["service"] = True
            spec["ports"] = [int(p) for p in ports]
        if namespace:
            with self._state() as st:
                if namespace not in st["namespaces"]:
                    raise NamespaceNotFoundError(f"run: namespace {namespace!r} does not exist "
                                                 f"(namespace_create({namespace!r}) creates it)")
            spec["namespace"] = namespace
        self._node_filter(node, spec)
        cur = self._current(pod)
        vol: Dict[str, Any] = {"name": pod, "path": DATA_PATH}
        if cur:
            vol["cid"] = cur
        spec["volumes"] = [vol]
        try:
            task = self.client.submit(spec)
        except BadRequestError as e:
            raise DPhiError(f"run: {e.message}", e.status) from None
        if not wait:
            return {"message": "DPhi Pod scheduled" if scheduled_time else "DPhi Pod started", "pod_name": pod,
                    "task_id": task["id"], "status": _phase(task.get("state", ""))}
        done = self.client.wait(task["id"])
        self._raise_unscheduled(done, image)
        return self._pod_view(pod, done)

    @staticmethod
    def _raise_unscheduled(task: Mapping[str, Any], image: str) -> None:
        if task.get("state") != "failed" or task.get("executions"):
            return
        why = task.get("error") or task.get("reason") or task.get("state", "")
        if "image" in why.lower():
            raise MissingImageError(f"run: no provider could get image {image!r}: {why} (image_list() lists the "
                                    f"images built or loaded here)")
        raise ProviderBusyError(f"run: no provider took the pod: {why}")

    @staticmethod
    def _pod_view(pod: str, t: Mapping[str, Any]) -> Dict[str, Any]:
        return {"pod_name": pod, "status": _phase(t.get("state", "")), "state": t.get("state"), "task_id": t.get("id"),
                "exit_code": t.get("exit_code"), "logs": t.get("stdout", ""), "stderr": t.get("stderr", ""),
                "reason": t.get("error") or t.get("reason") or "", "provider": t.get("provider", ""),
                "started_at": t.get("started_at"), "finished_at": t.get("finished_at")}

    def pod_status(self, pod_name: str = "", wait: bool = False, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The status of the pod's latest run; with wait, once it ended
        (without polling: the node's events). NotFoundError-like DPhiError
        when the pod never ran."""
        pod = _pod(pod_name)
        name = POD_TASK_PREFIX + pod
        latest = next((t for t in self.client.list() if (t.get("spec") or {}).get("name") == name), None)
        if latest is None:
            raise DPhiError(f"pod_status: pod {pod!r} has not run (run(..., pod_name={pod_name!r}) starts it)")
        if wait and latest.get("state") not in TERMINAL_STATES:
            latest = self.client.wait(latest["id"], timeout=timeout)
        return self._pod_view(pod, latest)


def _tar_tags(path: pathlib.Path) -> List[str]:
    """The image names a ``docker save`` tarball holds (manifest.json's
    RepoTags)."""
    try:
        with _tarfile.open(path) as tar:
            try:
                f = tar.extractfile("manifest.json")
            except KeyError:
                return []
            manifest = json.load(f) if f else []
    except (_tarfile.TarError, ValueError, OSError) as e:
        raise MissingImageError(f"image_load: {path.name} is not a docker save tarball ({e})") from None
    return [t for m in manifest for t in (m.get("RepoTags") or [])]


_default: Optional[EMClient] = None


def _em() -> EMClient:
    global _default
    if _default is None:
        _default = EMClient()
    return _default


def use(client: EMClient) -> None:
    """Makes the module's functions go through client."""
    global _default
    _default = client


def uplink(filepaths: Union[PathLike, Sequence[PathLike]], dest_path: str = "", pod_name: str = "") -> Dict[str, Any]:
    """See EMClient.uplink."""
    return _em().uplink(filepaths, dest_path, pod_name)


def files_list(pod_name: str = "") -> Dict[str, Any]:
    """See EMClient.files_list."""
    return _em().files_list(pod_name)


def downlink(filepath: str, downlink_folder: PathLike = "downlink/", pod_name: str = "") -> Dict[str, Any]:
    """See EMClient.downlink."""
    return _em().downlink(filepath, downlink_folder, pod_name)


def delete(filepath: str, pod_name: str = "") -> Dict[str, Any]:
    """See EMClient.delete."""
    return _em().delete(filepath, pod_name)


def image_build(dockerfile: str, image: str, context: str = ".", pod_name: str = "", **kw: Any) -> Dict[str, Any]:
    """See EMClient.image_build."""
    return _em().image_build(dockerfile, image, context, pod_name, **kw)


def image_load(tarfile: str, image: str, pod_name: str = "") -> Dict[str, Any]:
    """See EMClient.image_load."""
    return _em().image_load(tarfile, image, pod_name)


def image_list() -> List[Dict[str, Any]]:
    """See EMClient.image_list."""
    return _em().image_list()


def run(image: str, node: Optional[str] = "MPU", max_duration: float = 1, command: Union[str, Sequence[str], None] = "",
        scheduled_time: Union[str, _dt.datetime, None] = None, pod_name: Optional[str] = None,
        ports: Optional[Sequence[int]] = None, args: Optional[Sequence[Any]] = None,
        envs: Optional[Mapping[str, Any]] = None, namespace: Optional[str] = None, **kw: Any) -> Dict[str, Any]:
    """See EMClient.run."""
    return _em().run(image, node=node, max_duration=max_duration, command=command, args=args, envs=envs,
                     scheduled_time=scheduled_time, pod_name=pod_name, ports=ports, namespace=namespace, **kw)


def pod_status(pod_name: str = "", **kw: Any) -> Dict[str, Any]:
    """See EMClient.pod_status."""
    return _em().pod_status(pod_name, **kw)


def namespace_create(namespace: str) -> Dict[str, Any]:
    """See EMClient.namespace_create."""
    return _em().namespace_create(namespace)

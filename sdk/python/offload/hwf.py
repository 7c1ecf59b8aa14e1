"""HWF's hub API on offload: tasks of stages and artifacts, dispatched to
hardware by description, results per stage and command.

HWF (a hardware test farm) describes a task as stages of shell commands
with data files, plus the artifacts to bring back, and dispatches it to
machines chosen by a hardware dict; offload runs it as one task whose
stages run in order in one sandbox::

    from offload import hwf as HWF

    task = HWF.Task(
        HWF.Stage(name="setup", data=[HWF.Data("in.raw", "in.raw")],
                  cmd=["run setup", "run check"], track_time=True, track_ram=True),
        HWF.Stage(name="run", cmd="run in.raw out.raw", track_cpu=True),
        HWF.Artifacts("out.raw"),
        hardware={"os": "linux", "cpu": "any", "gpu": "any", "ram": "any"},
    )
    with HWF.Hub(image="offload-test/hello:1") as hub:
        job = hub.dispatch(task=task)
        for result in hub.get_result([job], wait=True):
            print(result.exit_code, result.stage("run").time(), result.artifacts("out.raw"))

What maps to what:

- The *image* is what offload adds: HWF runs commands on the machine
  itself, offload in a container image (or WASM module) the providers run.
  Give it to ``Hub(image=...)`` or ``Task(..., image=...)`` (with
  ``runtime="wasm"`` for a module CID).
- A stage's ``cmd`` is one command or a list; each command becomes one
  offload stage (named ``"<stage>#<n>"``), split like a shell (shlex) and
  run as an argv: shell syntax (``>``, ``|``) needs ``sh -c '...'`` in an
  image that has a shell. Commands run in the task's work directory
  ``/work``, shared by every stage; the first failing command stops the
  rest.
- ``Data(path, filename)``: the local file ``path`` is sent as content and
  appears read-only as ``/data/<filename>`` (``$HWF_DATA`` is ``/data``).
- ``Artifacts("log.txt", ...)``: names relative to ``/work`` (or absolute
  under ``/work`` or ``/outputs``) brought back; ``result.artifacts(name)``
  is the local path of one, fetched on first use.
- ``hardware``: ``os`` (e.g. "linux"), ``cpu`` (a core count, or text the
  CPU model must contain), ``gpu`` (a count, or text a GPU model must
  contain; the task then gets one GPU), ``ram`` (GiB as a number, or
  "16g"). "any" (or a missing key) matches every provider. They become
  the task's requirements (``machine``: os, cpus or cpu_model and
  memory_bytes of the whole machine; ``gpu``: models), which providers
  check themselves, so no provider without the hardware takes the task;
  when none the node knows has it, dispatch raises NoProviderError at
  once.
- Tracking, which HWF left unimplemented, is measured by the provider for
  every command: ``track_time`` (wall milliseconds), ``track_ram`` (peak
  resident bytes), ``track_cpu`` (CPU milliseconds), ``track_gpu`` (the
  GPUs the task was given: offload measures no GPU utilisation). A measure
  a stage did not ask for is None.
- ``get_result(job_ids, wait=True)`` returns results in the order the jobs
  finish; with ``wait=False`` only the jobs already done.
"""

from __future__ import annotations

import math
import pathlib
import queue
import shlex
import shutil
import tempfile
import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from ._http import PathLike
from .client import TERMINAL_STATES, Client, parse_size
from .errors import NoProviderError

__all__ = ["Task", "Stage", "Artifacts", "Data", "Hub", "Result", "StageResult", "CommandResult", "HardwarePool",
           "Measure", "DATA_DIR", "WORK_DIR"]

#: Where Data files appear in the task.
DATA_DIR = "/data"
#: The work directory commands run in and artifacts are relative to.
WORK_DIR = "/work"


class Data:
    """A local file a stage needs: ``path`` here, ``filename`` (default its
    own name) under /data in the task."""

    def __init__(self, path: PathLike, filename: Optional[str] = None, name: Optional[str] = None):
        self.path = pathlib.Path(path)
        self.filename = filename or name or self.path.name
        if "/" in self.filename or self.filename in ("", ".", ".."):
            raise ValueError(f"Data filename {self.filename!r}: want a plain file name")

    def __repr__(self) -> str:
        return f"Data({str(self.path)!r}, {self.filename!r})"


class Stage:
    """A named step of commands, with the data it needs and what to track."""

    def __init__(self, name: Optional[str] = None, data: Optional[Sequence[Data]] = None,
                 cmd: Union[str, Sequence[str], None] = None, track_time: bool = True, track_ram: bool = False,
                 track_cpu: bool = False, track_gpu: bool = False, comment: str = ""):
        self.name = name
        self.data = list(data or [])
        self.cmd = [cmd] if isinstance(cmd, str) else list(cmd or [])
        self.track_time = track_time
        self.track_ram = track_ram
        self.track_cpu = track_cpu
        self.track_gpu = track_gpu
        self.comment = comment
        if not self.cmd:
            raise ValueError(f"stage {name!r} has no command")


class Artifacts:
    """Files to bring back, relative to /work (or absolute under /work or
    /outputs)."""

    def __init__(self, *files: str):
        self.files = list(files)


class Task:
    """Stages and artifacts, in order, and the hardware to run them on;
    image and runtime say what runs the commands (default: the Hub's)."""

    def __init__(self, *actions: Union[Stage, Artifacts], hardware: Optional[Mapping[str, Any]] = None,
                 image: Optional[str] = None, runtime: Optional[str] = None, timeout: Optional[float] = None):
        self.stages: List[Stage] = []
        self.artifacts: List[Artifacts] = []
        for action in actions:
            if isinstance(action, Stage):
                self.stages.append(action)
            elif isinstance(action, Artifacts):
                self.artifacts.append(action)
            else:
                raise TypeError(f"{type(action).__name__} is not supported! (want Stage or Artifacts)")
        if not self.stages:
            raise ValueError("a Task needs at least one Stage")
        for i, s in enumerate(self.stages):
            if s.name is None:
                s.name = f"stage{i + 1}"
        self.hardware = dict(hardware or {})
        self.image = image
        self.runtime = runtime
        self.timeout = timeout

    def artifact_paths(self) -> List[str]:
        out = []
        for a in self.artifacts:
            for f in a.files:
                out.append(f if f.startswith("/") else f"{WORK_DIR}/{f}")
        return out


class Measure(float):
    """A measurement (milliseconds or bytes); calling it returns it too,
    as HWF's sketches call ``result.stage(name).time()``."""

    def __call__(self) -> float:
        return float(self)


def _measure(v: Optional[float], tracked: bool) -> Optional[Measure]:
    return Measure(v or 0) if tracked else None


class CommandResult:
    """One command of a stage: cmd, exit_code, stdout, stderr, and the
    measures its stage tracks (time, ram, cpu, gpu; None if not tracked)."""

    def __init__(self, cmd: str, raw: Mapping[str, Any], stage: Stage, gpus: List[Dict[str, Any]]):
        usage = raw.get("usage") or {}
        self.cmd = cmd
        self.exit_code: int = raw.get("exit_code", -1)
        self.stdout: str = raw.get("stdout", "")
        self.stderr: str = raw.get("stderr", "")
        self.error: str = raw.get("error", "")
        self.time = _measure(raw.get("wall_ms") or usage.get("wall_ms"), stage.track_time)
        self.ram = _measure(usage.get("max_rss_bytes"), stage.track_ram)
        self.cpu = _measure(usage.get("cpu_ms"), stage.track_cpu)
        self.gpu = gpus if stage.track_gpu else None

    def __repr__(self) -> str:
        return f"CommandResult({self.cmd!r}, exit_code={self.exit_code})"


class StageResult:
    """A stage's commands (``commands``, in order, only those that ran) with
    their sums: time and cpu added, ram the peak; comment as given."""

    def __init__(self, stage: Stage, commands: List[CommandResult]):
        self.name = stage.name
        self.comment = stage.comment
        self.commands = commands
        ran = len(commands) == len(stage.cmd)
        self.exit_code = commands[-1].exit_code if commands else -1
        self.completed = ran and all(c.exit_code == 0 for c in commands)
        self.time = _measure(sum(c.time or 0 for c in commands), stage.track_time)
        self.ram = _measure(max((c.ram or 0 for c in commands), default=0), stage.track_ram)
        self.cpu = _measure(sum(c.cpu or 0 for c in commands), stage.track_cpu)
        self.gpu = commands[0].gpu if commands and stage.track_gpu else ([] if stage.track_gpu else None)

    def cmd(self) -> Dict[str, Dict[str, Any]]:
        """Everything about the commands, by command."""
        return {c.cmd: {"exit_code": c.exit_code, "stdout": c.stdout, "stderr": c.stderr, "time": c.time,
                        "ram": c.ram, "cpu": c.cpu, "gpu": c.gpu} for c in self.commands}

    def __repr__(self) -> str:
        return f"StageResult({self.name!r}, commands={len(self.commands)}, exit_code={self.exit_code})"


class Result:
    """One job's result: ``id``, ``state``, ``exit_code`` (of the last
    command that ran), ``stdout``/``stderr`` (of that command), ``error``,
    ``stages`` (StageResult, in order), ``stage(name)``, ``hardware`` (the
    provider's: os, arch, cpu_model, cpus, memory_bytes, gpus, labels),
    ``provider``, ``time`` (whole job, ms) and ``artifacts(name)``."""

    def __init__(self, hub: "Hub", task: Task, raw: Mapping[str, Any]):
        self._hub = hub
        self.raw = dict(raw)
        self.id: str = raw["id"]
        self.state: str = raw.get("state", "")
        self.provider: str = raw.get("provider", "")
        self.error: str = raw.get("error", "")
        self.hardware: Dict[str, Any] = hub._hardware_of(self.provider)
        gpus = list(self.hardware.get("gpus") or [])[: int(((raw.get("spec") or {}).get("resources") or {}).get("gpus", 0))]
        by_name = {s.get("name"): s for s in raw.get("stages") or []}
        self.stages: List[StageResult] = []
        for i, st in enumerate(task.stages):
            cmds = []
            for j, c in enumerate(st.cmd):
                r = by_name.get(_stage_name(i, st, j))
                if r is not None:
                    cmds.append(CommandResult(c, r, st, gpus))
            self.stages.append(StageResult(st, cmds))
        ran = [c for s in self.stages for c in s.commands]
        code = raw.get("exit_code")
        self.exit_code: int = int(code) if code is not None else (ran[-1].exit_code if ran else -1)
        self.stdout: str = ran[-1].stdout if ran else raw.get("stdout", "")
        self.stderr: str = ran[-1].stderr if ran else raw.get("stderr", "")
        self.time = Measure((raw.get("usage") or {}).get("wall_ms") or 0)
        self._task = task
        self._dir: Optional[pathlib.Path] = None

    def stage(self, name: str) -> StageResult:
        """The result of the stage called name (KeyError if none)."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r} in job {self.id} (stages: {[s.name for s in self.stages]})")

    def artifacts(self, name: Optional[str] = None) -> Union[pathlib.Path, Dict[str, pathlib.Path]]:
        """The local path of an artifact (as named in Artifacts), fetched
        into the hub's download directory on first use; without a name, all
        of them by name. FileNotFoundError when the job did not return it."""
        if self._dir is None:
            if not self.raw.get("outputs"):
                raise FileNotFoundError(f"job {self.id} returned no artifacts ({self.state}: {self.error})")
            self._dir = self._hub._fetch(self.id)
        names = [f for a in self._task.artifacts for f in a.files]
        paths = {}
        for f in names:
            rel = f[len(WORK_DIR) + 1:] if f.startswith(WORK_DIR + "/") else (
                f[len("/outputs/"):] if f.startswith("/outputs/") else f)
            paths[f] = self._dir / rel
        if name is None:
            return paths
        if name not in paths or not paths[name].exists():
            raise FileNotFoundError(f"job {self.id} has no artifact {name!r} (artifacts: {names})")
        return paths[name]

    def __repr__(self) -> str:
        return f"Result({self.id!r}, state={self.state!r}, exit_code={self.exit_code})"


def _stage_name(i: int, st: Stage, j: int) -> str:
    return f"{st.name}#{j + 1}"


class HardwarePool(list):
    """The providers the node knows (each a dict: peer, hardware, free,
    price, ...). ``get(*keys)`` lists the distinct combinations of hardware
    keys ("os", "cpu", "gpu", "ram"), each a dict usable as a Task's or
    dispatch's hardware."""

    def get(self, *keys: str) -> List[Dict[str, Any]]:
        keys = keys or ("os", "cpu", "gpu", "ram")
        seen, out = set(), []
        for p in self:
            hw = _hwf_view(p.get("hardware") or {})
            combo = tuple((k, hw.get(k)) for k in keys)
            if combo not in seen:
                seen.add(combo)
                out.append(dict(combo))
        return out


def _hwf_view(hw: Mapping[str, Any]) -> Dict[str, Any]:
    gpus = hw.get("gpus") or []
    return {"os": hw.get("os"), "cpu": hw.get("cpu_model") or hw.get("cpus"),
            "gpu": gpus[0].get("model") if gpus else None, "ram": round((hw.get("memory_bytes") or 0) / (1 << 30), 1)}


def _any(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in ("", "any"))


def _matches(p: Mapping[str, Any], hardware: Mapping[str, Any]) -> bool:
    hw = p.get("hardware") or {}
    os_, cpu, gpu, ram = (hardware.get(k) for k in ("os", "cpu", "gpu", "ram"))
    if not _any(os_) and str(os_).lower() != str(hw.get("os", "")).lower():
        return False
    if not _any(cpu):
        if isinstance(cpu, (int, float)):
            if (hw.get("cpus") or 0) < cpu:
                return False
        elif str(cpu).lower() not in str(hw.get("cpu_model", "")).lower():
            return False
    gpus = hw.get("gpus") or []
    if not _any(gpu):
        if isinstance(gpu, (int, float)):
            if len(gpus) < gpu:
                return False
        elif not any(str(gpu).lower() in str(g.get("model", "")).lower() for g in gpus):
            return False
    if not _any(ram):
        want = int(ram * (1 << 30)) if isinstance(ram, (int, float)) else parse_size(str(ram))
        if (hw.get("memory_bytes") or 0) < want:
            return False
    return True


def _machine(hardware: Mapping[str, Any]) -> Dict[str, Any]:
    """The task spec's machine requirements for HWF's os, cpu (a count or
    a model) and ram (GB, or a size such as "64g")."""
    out: Dict[str, Any] = {}
    os_, cpu, ram = (hardware.get(k) for k in ("os", "cpu", "ram"))
    if not _any(os_):
        out["os"] = str(os_)
    if not _any(cpu):
        if isinstance(cpu, (int, float)):
            out["cpus"] = int(math.ceil(cpu))
        else:
            out["cpu_model"] = str(cpu)
    if not _any(ram):
        out["memory_bytes"] = int(ram * (1 << 30)) if isinstance(ram, (int, float)) else parse_size(str(ram))
    return out


class Hub:
    """The hub: dispatches tasks through the offload node of ``home``
    (default $OFFLOAD_HOME) and collects results. ``ip_address`` is
    accepted for HWF's signature; the node is found through its home (or
    ``url``/``token``). ``image``/``runtime`` are the default for tasks
    that name none; ``download_dir`` is where artifacts are fetched
    (default a temporary directory removed by disconnect)."""

    def __init__(self, ip_address: Optional[str] = None, home: Optional[PathLike] = None, url: Optional[str] = None,
                 token: Optional[str] = None, image: Optional[str] = None, runtime: Optional[str] = None,
                 download_dir: Optional[PathLike] = None, client: Optional[Client] = None):
        self.ip_address = ip_address
        self.client = client or Client(home=home, url=url, token=token)
        self.image = image
        self.runtime = runtime
        self._own_dir = download_dir is None
        self._download = pathlib.Path(download_dir) if download_dir else None
        self._jobs: Dict[str, Task] = {}
        self._pool: Optional[HardwarePool] = None
        self.connected = False

    def __enter__(self) -> "Hub":
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    def connect(self, timeout: Optional[float] = 10) -> None:
        """Checks that the node answers."""
        self.client.initiate_connection(timeout=timeout)
        self.connected = True

    def disconnect(self) -> None:
        """Forgets fetched artifacts of a temporary download directory."""
        if self._own_dir and self._download is not None:
            shutil.rmtree(self._download, ignore_errors=True)
            self._download = None
        self.connected = False

    def get_hardware_pool(self, **hardware: Any) -> HardwarePool:
        """The providers the node knows, as a HardwarePool, filtered by
        HWF's hardware keys (os, cpu, gpu, ram; "any" matches all)."""
        unknown = set(hardware) - {"os", "cpu", "gpu", "ram"}
        if unknown:
            raise ValueError(f"unknown hardware keys {sorted(unknown)} (want os, cpu, gpu, ram)")
        everyone = self.client.pool()
        self._pool = HardwarePool(everyone)
        return HardwarePool(p for p in everyone if _matches(p, hardware))

    def _hardware_of(self, provider: str) -> Dict[str, Any]:
        for pool in (self._pool, None):
            if pool is None:
                pool = HardwarePool(self.client.pool())
                self._pool = pool
            for p in pool:
                if p.get("peer") == provider:
                    return dict(p.get("hardware") or {}, peer=provider)
        return {"peer": provider}

    def _spec(self, task: Task, hardware: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        image = task.image or self.image
        if not image:
            raise ValueError("no image: give Hub(image=...) or Task(..., image=...) (HWF runs commands on the "
                             "machine; offload runs them in an image the providers run)")
        runtime = task.runtime or self.runtime
        hw = dict(task.hardware)
        hw.update(hardware or {})
        stages = []
        for i, st in enumerate(task.stages):
            for j, c in enumerate(st.cmd):
                stages.append({"name": _stage_name(i, st, j), "cmd": shlex.split(c)})
        spec: Dict[str, Any] = {"image": image, "stages": stages, "workdir": WORK_DIR,
                                "name": "hwf:" + ",".join(str(s.name) for s in task.stages)[:60]}
        if runtime:
            spec["runtime"] = runtime
        if task.timeout:
            spec["timeout_ms"] = int(task.timeout * 1000)
        arts = task.artifact_paths()
        if arts:
            spec["artifacts"] = arts
        gpu = hw.get("gpu")
        if not _any(gpu):
            spec["resources"] = {"gpus": int(gpu) if isinstance(gpu, (int, float)) else 1}
            if not isinstance(gpu, (int, float)):
                # A model: providers match it themselves (typed GPU
                # requirements), as they do the count.
                spec["gpu"] = {"models": [str(gpu)]}
        machine = _machine(hw)
        if machine:
            spec["machine"] = machine
        if any(not _any(hw.get(k)) for k in ("os", "cpu", "gpu", "ram")):
            # The providers check the requirements themselves; this only
            # says at once, as HWF's hub does, when none the node knows can.
            known = self.client.pool()
            self._pool = HardwarePool(known)
            if not any(_matches(p, hw) for p in known):
                known_hw = [_hwf_view(p.get("hardware") or {}) for p in known]
                raise NoProviderError({"state": "failed"}, f"dispatch: no provider the node knows has the hardware "
                                                           f"{hw} (known: {known_hw})")
        files: Dict[str, pathlib.Path] = {}
        for st in task.stages:
            for d in st.data:
                if not d.path.is_file():
                    raise FileNotFoundError(f"stage {st.name!r}: data file {d.path} does not exist")
                if d.filename in files and files[d.filename].resolve() != d.path.resolve():
                    raise ValueError(f"two data files are named {d.filename!r}: {files[d.filename]} and {d.path}")
                files[d.filename] = d.path
        if files:
            with tempfile.TemporaryDirectory(prefix="hwf-data-") as tmp:
                for name, p in files.items():
                    shutil.copyfile(p, pathlib.Path(tmp) / name)
                cid = self.client.add(tmp, temporary=True)
            spec["inputs"] = [{"cid": cid, "path": DATA_DIR}]
            spec["env"] = {"HWF_DATA": DATA_DIR}
        return spec

    def dispatch(self, hardware: Optional[Mapping[str, Any]] = None, task: Optional[Task] = None,
                 priority: int = 0, exec: Optional[Task] = None) -> str:
        """Sends a task (``task=`` or HWF's older ``exec=``) to a provider
        with the hardware (the task's, updated by ``hardware``) and returns
        its job id at once. priority is accepted and ignored (the market
        orders by price and readiness)."""
        task = task or exec
        if task is None:
            raise ValueError("dispatch needs task=")
        job = self.client.submit(self._spec(task, hardware))
        self._jobs[job["id"]] = task
        return job["id"]

    dispatch_async = dispatch

    def get_result(self, job_ids: Union[str, Iterable[str]], wait: bool = True,
                   timeout: Optional[float] = None) -> List[Result]:
        """The results of jobs, in the order they finish. With wait, waits
        for all (up to timeout seconds: TaskTimeoutError); without, returns
        only the jobs already done."""
        ids = [job_ids] if isinstance(job_ids, str) else list(job_ids)
        for i in ids:
            if i not in self._jobs:
                raise KeyError(f"job {i!r} was not dispatched by this hub")
        if not wait:
            done = [self.client.status(i) for i in ids]
            return [Result(self, self._jobs[t["id"]], t) for t in done if t.get("state") in TERMINAL_STATES]
        q: "queue.Queue[Any]" = queue.Queue()

        def one(i: str) -> None:
            try:
                q.put(self.client.wait(i, timeout=timeout))
            except BaseException as e:  # noqa: BLE001 - re-raised below
                q.put(e)
        for i in ids:
            threading.Thread(target=one, args=(i,), daemon=True).start()
        out = []
        for _ in ids:
            r = q.get()
            if isinstance(r, BaseException):
                raise r
            out.append(Result(self, self._jobs[r["id"]], r))
        return out

    def _fetch(self, job_id: str) -> pathlib.Path:
        if self._download is None:
            self._download = pathlib.Path(tempfile.mkdtemp(prefix="hwf-results-"))
        dest = self._download / job_id
        if not dest.exists():
            self.client.results(job_id, dest)
        return dest

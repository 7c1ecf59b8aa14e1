"""A PEP 517 build backend for the offload package, standard library only.

pip runs it from this directory (pyproject.toml: backend-path), so building
needs nothing installed: no setuptools, no wheel, no package index. It
packs the ``offload`` package directory (every ``.py`` file and
``py.typed``) into a pure-Python wheel, or with the tests and this backend
into an sdist. Metadata comes from pyproject.toml's [project] table.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import pathlib
import re
import tarfile
import zipfile
from typing import Any, Dict, List, Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "offload"


def _project() -> Dict[str, Any]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib  # Python 3.11+
        return tomllib.loads(text)["project"]
    except ImportError:
        pass
    # Python 3.9/3.10: the few plain `key = "value"` lines of [project].
    section = text.split("[project]", 1)[1].split("\n[", 1)[0]
    return {k: v for k, v in re.findall(r'^([\w-]+)\s*=\s*"([^"]*)"', section, re.M)}


def _metadata() -> str:
    p = _project()
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}"]
    if p.get("description"):
        lines.append(f"Summary: {p['description']}")
    if p.get("requires-python"):
        lines.append(f"Requires-Python: {p['requires-python']}")
    for c in p.get("classifiers", []) if isinstance(p.get("classifiers"), list) else []:
        lines.append(f"Classifier: {c}")
    readme = ROOT / "README.md"
    if readme.exists():
        lines.append("Description-Content-Type: text/markdown")
        return "\n".join(lines) + "\n\n" + readme.read_text(encoding="utf-8")
    return "\n".join(lines) + "\n"


def _dist() -> str:
    p = _project()
    return f"{re.sub(r'[-.]+', '_', p['name'])}-{p['version']}"


def _package_files() -> List[pathlib.Path]:
    src = ROOT / PACKAGE
    return sorted(f for f in src.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                  and (f.suffix in (".py", ".pyi") or f.name == "py.typed"))


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _write_wheel(wheel_directory: str, editable: bool = False) -> str:
    dist = _dist()
    name = f"{dist}-py3-none-any.whl"
    info = f"{dist}.dist-info"
    files: List[tuple] = []
    if editable:
        files.append((f"{PACKAGE}_editable.pth", (str(ROOT) + "\n").encode()))
    else:
        for f in _package_files():
            files.append((f.relative_to(ROOT).as_posix(), f.read_bytes()))
    files.append((f"{info}/METADATA", _metadata().encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: offload_build\nRoot-Is-Purelib: true\n"
                                    b"Tag: py3-none-any\n"))
    files.append((f"{info}/top_level.txt", (PACKAGE + "\n").encode()))
    record = [_record_line(n, d) for n, d in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    path = os.path.join(wheel_directory, name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files:
            zi = zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, d)
    return name


# --- PEP 517 hooks ---------------------------------------------------------

def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: Optional[Dict[str, Any]] = None) -> str:
    info = f"{_dist()}.dist-info"
    d = pathlib.Path(metadata_directory) / info
    d.mkdir(parents=True, exist_ok=True)
    (d / "METADATA").write_text(_metadata(), encoding="utf-8")
    return info


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory: str, config_settings: Optional[Dict[str, Any]] = None,
                metadata_directory: Optional[str] = None) -> str:
    return _write_wheel(wheel_directory)


def build_editable(wheel_directory: str, config_settings: Optional[Dict[str, Any]] = None,
                   metadata_directory: Optional[str] = None) -> str:
    return _write_wheel(wheel_directory, editable=True)


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    dist = _dist()
    name = f"{dist}.tar.gz"
    members = [ROOT / "pyproject.toml", ROOT / "README.md", ROOT / "_build" / "offload_build.py"]
    members += _package_files() + sorted((ROOT / "tests").glob("*.py"))
    pkg_info = _metadata().encode()
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for f in members:
            if f.exists():
                tar.add(f, arcname=f"{dist}/{f.relative_to(ROOT).as_posix()}")
        ti = tarfile.TarInfo(f"{dist}/PKG-INFO")
        ti.size = len(pkg_info)
        tar.addfile(ti, io.BytesIO(pkg_info))
    return name

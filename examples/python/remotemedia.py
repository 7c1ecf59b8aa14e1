"""RemoteMedia's remote proxy, on offload: an object's methods run on a provider.

A RemoteMedia user writes a class, wraps an instance with
``await client.create_proxy(obj)`` and awaits its methods. Here the class
analyses audio with numpy and text with ``textstats``, a package the
provider does not have: this script builds its wheel and supplies it, and
the provider installs it into a virtual environment of this session only
(providers have no network). The object lives in a service task on a real
Python image (``bash scripts/python-image.sh``, pushed by CID).

What it checks: a call with keyword arguments, an attribute and a property,
an async method, a generator streamed back, an exception raised remotely,
the pip package, and that the object kept its state between calls. It
exits non-zero when a result is not what it expects.

    OFFLOAD_HOME=/tmp/B python3 examples/python/remotemedia.py --image CID_OR_NAME
"""

import argparse
import array
import asyncio
import base64
import hashlib
import math
import pathlib
import shutil
import tempfile
import zipfile

from offload.remotemedia import RemoteExecutorConfig, RemoteProxyClient

HERE = pathlib.Path(__file__).resolve().parent


class AudioAnalyzer:
    """Runs on the provider. Samples are little-endian float32 bytes."""

    kind = "audio-analyzer"

    def __init__(self, rate: int):
        self.rate = rate
        self.frames = 0

    @property
    def frames_seen(self) -> int:
        return self.frames

    def rms(self, samples: bytes, gain: float = 1.0) -> float:
        import numpy as np

        x = np.frombuffer(samples, dtype="<f4") * gain
        self.frames += len(x)
        return float(np.sqrt(np.mean(x * x)))

    async def peak_hz(self, samples: bytes) -> float:
        import numpy as np

        await asyncio.sleep(0)  # an async method: awaited on the provider
        x = np.frombuffer(samples, dtype="<f4")
        spectrum = np.abs(np.fft.rfft(x))
        return float(np.argmax(spectrum) * self.rate / len(x))

    def windows(self, samples: bytes, size: int):
        import numpy as np

        x = np.frombuffer(samples, dtype="<f4")
        for i in range(0, len(x), size):
            w = x[i:i + size]
            yield round(float(np.sqrt(np.mean(w * w))), 4)

    def describe(self, text: str) -> dict:
        import sys as remote_sys

        import textstats  # installed from the wheel this script supplies

        return {"stats": textstats.summary(text), "from": textstats.__file__, "prefix": remote_sys.prefix}

    def check(self, samples: bytes) -> None:
        if len(samples) % 4:
            raise ValueError(f"{len(samples)} bytes is not a whole number of float32 samples")


def tone(hz: float, rate: int, seconds: float, amplitude: float) -> bytes:
    n = int(rate * seconds)
    return array.array("f", (amplitude * math.sin(2 * math.pi * hz * i / rate) for i in range(n))).tobytes()


def build_wheel(dest: pathlib.Path) -> pathlib.Path:
    """Packs textstats/ as a pure-Python wheel, standard library only (this
    machine has no package index, nor the wheel package that
    ``pip wheel`` would need); with an index, ``pip wheel`` or
    ``pip download`` gives you the wheels instead."""
    name, version = "textstats", "1.0.0"
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/{p.name}": p.read_bytes() for p in sorted((HERE / "textstats" / name).glob("*.py"))}
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: offload-example\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


def expect(what: str, got, want) -> None:
    ok = got == want if not isinstance(want, float) else abs(got - want) < 1e-3
    print(f"{'ok ' if ok else 'BAD'} {what}: {got!r}")
    if not ok:
        raise SystemExit(f"{what}: got {got!r}, want {want!r}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True, help="the Python image: a CID (offload image push) or a name")
    args = ap.parse_args()

    wheels = pathlib.Path(tempfile.mkdtemp(prefix="wheels-"))
    build_wheel(wheels)
    config = RemoteExecutorConfig(image=args.image, pip_packages=["textstats==1.0.0"], wheels=[wheels],
                                  timeout=60, max_retries=2, resources={"cpus": 1, "memory_bytes": 512 << 20})
    rate = 8000
    samples = tone(440.0, rate, 0.5, 0.5)
    async with RemoteProxyClient(config) as client:
        remote = await client.create_proxy(AudioAnalyzer(rate))
        print(f"session runs as task {remote.task_id} on {remote.provider}")
        expect("rms (keyword argument)", round(await remote.rms(samples, gain=2.0), 3), round(1 / math.sqrt(2), 3))
        expect("attribute", await remote.kind, "audio-analyzer")
        expect("property after one call", await remote.frames_seen, len(samples) // 4)
        expect("async method", await remote.peak_hz(samples), 440.0)
        got = [w async for w in await remote.windows(samples, 1000)]
        expect("generator windows", len(got), 4)
        expect("generator values", all(abs(w - 0.3536) < 0.01 for w in got), True)
        d = await remote.describe("the cat saw the other cat")
        expect("pip package", d["stats"], {"words": 6, "distinct": 4, "top": [("the", 2), ("cat", 2), ("saw", 1)]})
        expect("installed in the session's own venv", d["from"].startswith("/tmp/offload-venv/"), True)
        try:
            await remote.check(b"\x00" * 5)
        except ValueError as e:
            expect("remote exception", "whole number" in str(e), True)
        else:
            raise SystemExit("check did not raise")
        expect("state kept", await remote.frames_seen, len(samples) // 4)
    shutil.rmtree(wheels, ignore_errors=True)
    print("remotemedia example: all good")


if __name__ == "__main__":
    asyncio.run(main())

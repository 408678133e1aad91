"""Rebuild fixtures/faces/ from registry packages, pinned by version and sha256.

The portraits are public domain (US federal government works) and ship in the
face_recognition 1.3.0 source distribution; the astronaut is NASA's (public domain) and
ships in scikit-image. This script downloads the pinned archives with pip (the only
network it uses is the package registry), checks their sha256, extracts the files and
checks theirs. The extracted files are committed, so nothing runs this at set-up time;
run it to audit or rebuild them:  .venv/bin/python tools/fetch_fixtures.py
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "faces"

# (pip requirement, pip flags, archive file sha256, {member: (output name, sha256)})
SOURCES = [
    (
        "face_recognition==1.3.0",
        ["--no-binary", ":all:"],
        "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        {
            "face_recognition-1.3.0/tests/test_images/obama.jpg": "obama.jpg",
            "face_recognition-1.3.0/tests/test_images/obama2.jpg": "obama2.jpg",
            "face_recognition-1.3.0/tests/test_images/obama3.jpg": "obama3.jpg",
            "face_recognition-1.3.0/tests/test_images/biden.jpg": "biden.jpg",
        },
    ),
    (
        "scikit-image==0.26.0",
        ["--only-binary", ":all:"],
        None,  # wheels differ per platform; the extracted file's hash is what counts
        {"skimage/data/astronaut.png": "astronaut.png"},
    ),
]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    expected = {}
    sums = OUT / "SHA256SUMS"
    if sums.exists():
        for line in sums.read_text().splitlines():
            digest, name = line.split()
            expected[name] = digest
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for req, flags, archive_sha, members in SOURCES:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", *flags, "-d", tmp, req],
                check=True,
            )
            name = req.split("==")[0].replace("-", "_").lower()
            (archive,) = [p for p in Path(tmp).iterdir() if p.name.lower().startswith(name)]
            blob = archive.read_bytes()
            if archive_sha and sha256(blob) != archive_sha:
                raise SystemExit(f"{archive.name}: sha256 {sha256(blob)}, expected {archive_sha}")
            if archive.suffix == ".whl":
                zf = zipfile.ZipFile(io.BytesIO(blob))
                read = zf.read
            else:
                tf = tarfile.open(fileobj=io.BytesIO(blob))  # noqa: SIM115 - lives for the loop

                def read(member: str, tf: tarfile.TarFile = tf) -> bytes:
                    f = tf.extractfile(member)
                    assert f is not None
                    return f.read()

            for member, out_name in members.items():
                data = read(member)
                if out_name in expected and expected[out_name] != sha256(data):
                    got = sha256(data)
                    raise SystemExit(f"{out_name}: sha256 {got}, expected {expected[out_name]}")
                (OUT / out_name).write_bytes(data)
                print(f"{out_name}: {len(data)} bytes from {req}:{member}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

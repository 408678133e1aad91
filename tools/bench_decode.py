#!/usr/bin/env python3
"""Peak memory of decoding untrusted image bytes: worst-case inputs the decoder may accept.

    .venv/bin/python tools/bench_decode.py [--out DIR] [--case NAME ...] [--json]

Each input is crafted here (all-zero PNGs of every colour type and bit depth compress to
a few hundred kB; JPEGs baseline, progressive, 4:4:4, CMYK, long strips; a PNG of noise
at the byte limit) and decoded in a fresh child process with the default
``DecodeConfig``. The child prints its peak RSS (``VmHWM``) after importing the
decoder (the baseline) and after reading the file and decoding it (``VmHWM``: Linux
carries ``ru_maxrss`` over from the parent across ``exec``); the figure that counts is
the peak. Prints one line per input and the machine load (``uptime``): the
figures are real measurements of this machine's Python, numpy and Pillow.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "device"))

CHILD = r"""
import json, sys
from pathlib import Path
from kycedge.core.errors import ImageError
from kycedge.vision.decode import decode_image, read_image_file

def hwm_kb():  # this process image's peak RSS (ru_maxrss would carry the parent's across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

base = hwm_kb()
try:
    rgb = decode_image(read_image_file(Path(sys.argv[1])))
    out = {"ok": True, "shape": list(rgb.shape)}
except ImageError as e:
    out = {"ok": False, "reason": e.reason, "message": e.message[:160]}
out["baseline_kb"] = base
out["peak_kb"] = hwm_kb()
print(json.dumps(out))
"""


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_png_zero(path: Path, w: int, h: int, depth: int, color: int, plte: bool = False,
                   trns: bool = False) -> None:
    """A PNG of all-zero pixels, compressed row by row (the generator stays small too)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    row = b"\x00" + bytes((w * channels * depth + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(h)]
    parts.append(comp.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)))
        if plte:
            f.write(_chunk(b"PLTE", bytes(range(256)) * 3))
        if trns:
            f.write(_chunk(b"tRNS", b"\x00" * 16))
        f.write(_chunk(b"IDAT", b"".join(parts)))
        f.write(_chunk(b"IEND", b""))


def write_png_interlaced_zero(path: Path, w: int, h: int) -> None:
    """An Adam7-interlaced 8-bit RGB PNG of zeros."""
    comp = zlib.compressobj(9)
    parts = []
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                           (1, 0, 2, 2), (0, 1, 1, 2)):
        pw, ph = -(-(w - x0) // dx), -(-(h - y0) // dy)
        if pw > 0 and ph > 0:
            row = bytes(1 + pw * 3)
            parts += [comp.compress(row) for _ in range(ph)]
    parts.append(comp.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)))
        f.write(_chunk(b"IDAT", b"".join(parts)))
        f.write(_chunk(b"IEND", b""))


def write_png_chunks(path: Path, w: int, h: int, *, ztxt: int = 0, junk_after_bytes: int = 0) -> None:
    """A zero PNG with ``ztxt`` zTXt chunks of 1 MB of text each before IDAT and one
    ancillary chunk of ``junk_after_bytes`` after it (read during the pixel decode)."""
    write_png_zero(path, w, h, 8, 2)
    data = path.read_bytes()
    head, rest = data[:33], data[33:]          # signature + IHDR
    idat_end = rest.index(b"IEND") - 4
    text = b"".join(_chunk(b"zTXt", b"k%d\0\0" % i + zlib.compress(bytes(2**20), 9)) for i in range(ztxt))
    junk = _chunk(b"juNk", bytes(junk_after_bytes)) if junk_after_bytes else b""
    path.write_bytes(head + text + rest[:idat_end] + junk + rest[idat_end:])


def write_jpeg_app(path: Path, w: int, h: int, app_bytes: int) -> None:
    """A JPEG preceded by ``app_bytes`` of ICC profile APP2 segments (64 kB each)."""
    write_jpeg(path, w, h)
    data = path.read_bytes()
    seg = 65519 - 14
    n = max(1, app_bytes // seg)
    apps = b"".join(b"\xff\xe2" + struct.pack(">H", seg + 16) + b"ICC_PROFILE\0" + bytes([i % 255 + 1, 255])
                    + bytes(seg) for i in range(min(n, 255)))
    apps += b"".join(b"\xff\xe3" + struct.pack(">H", seg + 2) + bytes(seg) for _ in range(max(0, n - 255)))
    path.write_bytes(data[:2] + apps + data[2:])


def write_jpeg_exif6(path: Path, w: int, h: int) -> None:
    import numpy as np
    from PIL import Image

    x = (np.arange(w, dtype=np.uint32) * 255 // max(1, w - 1)).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(x, (h, w)).copy()).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, format="JPEG", quality=80, exif=exif.tobytes())


def write_png_noise(path: Path, w: int, h: int) -> None:
    import numpy as np
    from PIL import Image

    rnd = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rnd).save(path, format="PNG", compress_level=1)


def write_jpeg(path: Path, w: int, h: int, mode: str = "RGB", **kw: object) -> None:
    import numpy as np
    from PIL import Image

    # a smooth gradient: small file, full-size decode
    x = (np.arange(w, dtype=np.uint32) * 255 // max(1, w - 1)).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(x, (h, w)).copy()).convert(mode)
    img.save(path, format="JPEG", quality=80, **kw)


S = 6300  # 6300 x 6300 = 39.7 MP, just under the default max_pixels (40 M)
CASES: dict[str, Callable[[Path], None]] = {
    "png-rgba16-6300": lambda p: write_png_zero(p, S, S, 16, 6),
    "png-rgb16-6300": lambda p: write_png_zero(p, S, S, 16, 2),
    "png-rgba8-6300": lambda p: write_png_zero(p, S, S, 8, 6),
    "png-rgb8-6300": lambda p: write_png_zero(p, S, S, 8, 2),
    "png-la16-6300": lambda p: write_png_zero(p, S, S, 16, 4),
    "png-gray16-6300": lambda p: write_png_zero(p, S, S, 16, 0),
    "png-gray8-6300": lambda p: write_png_zero(p, S, S, 8, 0),
    "png-palette-trns-6300": lambda p: write_png_zero(p, S, S, 8, 3, plte=True, trns=True),
    "png-rgb8-40000x1000": lambda p: write_png_zero(p, 40000, 1000, 8, 2),
    "png-rgb8-4000x3000": lambda p: write_png_zero(p, 4000, 3000, 8, 2),
    "png-noise-3200": lambda p: write_png_noise(p, 3200, 3200),
    "png-interlaced-rgb8-3000x2000": lambda p: write_png_interlaced_zero(p, 3000, 2000),
    "png-ztxt-64x1MB": lambda p: write_png_chunks(p, 1000, 1000, ztxt=64),
    "png-rgb8-3000x2000-junk-30MB": lambda p: write_png_chunks(p, 3000, 2000, junk_after_bytes=30 * 10**6),
    "jpeg-420-6300": lambda p: write_jpeg(p, S, S),
    "jpeg-444-6300": lambda p: write_jpeg(p, S, S, subsampling=0),
    "jpeg-progressive-444-6300": lambda p: write_jpeg(p, S, S, subsampling=0, progressive=True),
    "jpeg-progressive-420-6300": lambda p: write_jpeg(p, S, S, progressive=True),
    "jpeg-cmyk-6300": lambda p: write_jpeg(p, S, S, mode="CMYK"),
    "jpeg-420-20000x2000": lambda p: write_jpeg(p, 20000, 2000),
    "jpeg-progressive-444-20000x2000": lambda p: write_jpeg(p, 20000, 2000, subsampling=0,
                                                            progressive=True),
    "jpeg-420-4056x3040": lambda p: write_jpeg(p, 4056, 3040),
    "jpeg-exif6-6300": lambda p: write_jpeg_exif6(p, S, S),
    "jpeg-2000x1500-app-30MB": lambda p: write_jpeg_app(p, 2000, 1500, 30 * 10**6),
    "jpeg-4056x3040-app-30MB": lambda p: write_jpeg_app(p, 4056, 3040, 30 * 10**6),
}


def measure(path: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "device")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                         env=env, timeout=600, check=False)
    if out.returncode != 0:
        return {"ok": False, "reason": f"child exit {out.returncode}", "message": out.stderr[-300:],
                "peak_kb": 0, "baseline_kb": 0}
    res: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out", type=Path, default=None, help="keep the crafted inputs here")
    ap.add_argument("--case", action="append", default=None, choices=sorted(CASES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"# {load}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = args.out or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        for name in args.case or list(CASES):
            p = d / (name + (".png" if name.startswith("png") else ".jpg"))
            if not p.exists():
                CASES[name](p)
            r = measure(p)
            r["file_bytes"] = p.stat().st_size
            results[name] = r
            what = f"-> {r['shape']}" if r.get("ok") else f"refused {r['reason']}: {r.get('message', '')}"
            print(f"{name:34} {p.stat().st_size / 1e3:9.1f} kB  peak {int(r['peak_kb']) / 1024:7.1f} MB "  # type: ignore[call-overload]
                  f"(import {int(r['baseline_kb']) / 1024:5.1f} MB)  {what}", flush=True)  # type: ignore[call-overload]
    worst = max((int(r["peak_kb"]) for r in results.values()), default=0)  # type: ignore[call-overload]
    print(f"# worst peak RSS {worst / 1024:.1f} MB over {len(results)} inputs; {load}")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

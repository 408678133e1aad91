"""The unit's Debian package, built by packaging/deb/build.sh and installed with dpkg on this machine.

One test, in order (each step needs the one before): build, ``dpkg -i``, the user, groups
and directories, provisioning with the installed commands, ``kycedge config check`` of the
example config, the daemon started from the installed paths as user kycedge (systemd does
not run here: the binary directly, with a notify socket standing in for systemd) up to
READY=1 and a healthy local API, SIGTERM, then ``dpkg --purge`` leaves no key behind, and
``.keep-on-purge`` keeps them. On the way, picamera2 from the system's dist-packages (where
apt's python3-picamera2 lives) is imported through the venv's system site packages, with a
fake module standing in for the real one.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path("/opt/kycedge/.venv")
STATE = Path("/var/lib/kycedge")
ETC = Path("/etc/kycedge")
SYSTEM_DIST = Path("/usr/lib/python3/dist-packages")

pytestmark = [
    pytest.mark.slow, pytest.mark.deb,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dpkg-deb") is None
                       or not Path("/usr/bin/python3").exists(),
                       reason="needs root, dpkg and /usr/bin/python3"),
]

FAKE_PICAMERA2 = '''
"""A stand-in for apt's python3-picamera2 (tests/distro/test_deb.py)."""
import numpy as np

class _Request:
    def __init__(self, size):
        self.size = size
    def make_array(self, stream):
        w, h = self.size
        return np.full((h, w, 3), 7, np.uint8)
    def release(self):
        pass

class Picamera2:
    def __init__(self, num=0):
        self.size = (64, 48)
    def create_video_configuration(self, main, controls, buffer_count):
        self.size = main["size"]
        return {"main": main}
    def configure(self, config):
        pass
    def start(self):
        pass
    def capture_request(self):
        return _Request(self.size)
    def stop(self):
        pass
    def close(self):
        pass
'''


def run(*cmd: str, user: str | None = None, check: bool = True,
        **kw: object) -> subprocess.CompletedProcess[str]:
    argv = ["runuser", "-u", user, "--", *cmd] if user else list(cmd)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    if check:
        assert p.returncode == 0, f"{argv}: {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return p  # type: ignore[no-any-return]


def installed() -> bool:
    return subprocess.run(["dpkg", "-s", "kycedge"], capture_output=True).returncode == 0


@pytest.fixture
def clean_machine() -> Iterator[None]:
    if installed() and not (STATE / ".kycedge-test").exists():
        pytest.skip("a kycedge package not installed by this test is on this machine; not touching it")
    if installed():
        run("dpkg", "--purge", "kycedge")
    try:
        yield
    finally:
        if installed():
            subprocess.run(["dpkg", "--purge", "kycedge"], capture_output=True)
        shutil.rmtree(STATE, ignore_errors=True)
        shutil.rmtree("/run/kycedge", ignore_errors=True)


def test_deb_builds_installs_starts_and_purges(tmp_path: Path, clean_machine: None) -> None:
    out = run(str(ROOT / "packaging" / "deb" / "build.sh"), str(tmp_path / "dist")).stdout.strip()
    deb = Path(out.splitlines()[-1])
    assert deb.name.startswith("kycedge_0.")
    assert deb.suffix == ".deb"
    info = run("dpkg-deb", "-I", str(deb)).stdout
    assert f"Architecture: {run('dpkg', '--print-architecture').stdout.strip()}" in info
    listing = run("dpkg-deb", "-c", str(deb)).stdout
    for want in ("./opt/kycedge/.venv/bin/kycedge", "./opt/kycedge/models/manifest.json",
                 "./lib/systemd/system/kycedge.service", "./etc/kycedge/kycedge.toml.example"):
        assert want in listing, want

    run("dpkg", "-i", str(deb))
    (STATE / ".kycedge-test").touch()
    # user, groups, directories
    pw = pwd.getpwnam("kycedge")
    assert pw.pw_dir == str(STATE)
    assert pw.pw_shell == "/usr/sbin/nologin"
    assert grp.getgrgid(pw.pw_gid).gr_name == "kycedge"
    st = STATE.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, 0o700)
    st = ETC.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, pw.pw_gid, 0o750)
    assert (VENV / "bin" / "kycedge").read_text().startswith(f"#!{VENV}/bin/python")
    assert "include-system-site-packages = true" in (VENV / "pyvenv.cfg").read_text()
    staged = run("grep", "-rlI", "/tmp/", str(VENV / "bin"), str(VENV / "pyvenv.cfg"), check=False).stdout
    assert staged == "", staged  # the build's staging path was rewritten everywhere

    # picamera2 from the system's dist-packages, seen through the venv's system site packages
    fake = SYSTEM_DIST / "picamera2"
    planted = not fake.exists()
    if planted:
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text(FAKE_PICAMERA2)
    try:
        probe = run(str(VENV / "bin" / "python"), "-c",
                    "import picamera2; from kycedge.unit.capture.picamera import PiCameraSource\n"
                    "s = PiCameraSource(64, 48, 30); s.open(); f = s.read(2.0); s.close()\n"
                    "print(picamera2.__file__, f.rgb.shape)").stdout
        assert probe.startswith(str(SYSTEM_DIST / "picamera2"))
        assert "(48, 64, 3)" in probe
    finally:
        if planted:
            shutil.rmtree(fake)

    # provisioning with the installed commands, as the docs do
    bin_ = VENV / "bin"
    run(str(bin_ / "kycedge"), "keys", "init", "--state-dir", str(STATE), user="kycedge")
    run(str(bin_ / "kycedge"), "keys", "csr", "--tenant", "acme", "--device", "unit-0001",
        "--state-dir", str(STATE), user="kycedge")
    csr = STATE / "device-tls.csr"
    assert csr.exists()
    run(str(bin_ / "kycedge-fleet"), "ca", "init", "--dir", str(tmp_path / "ca"))
    run(str(bin_ / "kycedge-fleet"), "device", "issue", "--ca-dir", str(tmp_path / "ca"), "--tenant", "acme",
        "--device", "unit-0001", "--csr", str(csr), "--out", str(tmp_path / "issued"))
    keys = run(str(bin_ / "kycedge-carrier"), "keys", "init", "--state-dir", str(tmp_path / "carrier")).stdout
    kid = {line.split()[0]: line.split()[2] for line in keys.splitlines()}
    carrier_keys = tmp_path / "carrier" / "keys"
    for src, dst in ((next(carrier_keys.glob("hpke-*.pub")), "carrier-hpke.pub"),
                     (carrier_keys / "receipt.pub", "carrier-receipt.pub"),
                     (tmp_path / "issued" / "device.crt", "device.crt"),
                     (tmp_path / "issued" / "ca.crt", "ca.crt")):
        run("install", "-o", "root", "-g", "kycedge", "-m", "0640", str(src), str(ETC / dst))
    frames = Path(tempfile.mkdtemp(prefix="kycedge-deb-frames-"))
    frames.chmod(0o755)
    shutil.copy(ROOT / "fixtures" / "faces" / "astronaut.png", frames / "a.png")
    (frames / "a.png").chmod(0o644)
    notify_dir = Path(tempfile.mkdtemp(prefix="kycedge-deb-notify-"))
    notify_dir.chmod(0o755)
    try:
        _config_and_run(tmp_path, kid, frames, notify_dir)
    finally:
        shutil.rmtree(frames, ignore_errors=True)
        shutil.rmtree(notify_dir, ignore_errors=True)

    # purge: no key left behind
    assert list(STATE.glob("*.pem"))
    run("dpkg", "--purge", "kycedge")
    assert not STATE.exists()
    assert not ETC.exists()
    assert not VENV.exists()

    # unless asked: .keep-on-purge keeps the state directory and its keys
    run("dpkg", "-i", str(deb))
    (STATE / ".kycedge-test").touch()
    run(str(bin_ / "kycedge"), "keys", "init", "--state-dir", str(STATE), user="kycedge")
    (STATE / ".keep-on-purge").touch()
    p = run("dpkg", "--purge", "kycedge")
    assert "kept (.keep-on-purge)" in p.stderr
    assert (STATE / "device-ed25519.pem").exists()


def _config_and_run(tmp_path: Path, kid: dict[str, str], frames: Path, notify_dir: Path) -> None:
    text = (ETC / "kycedge.toml.example").read_text()
    zero = 'key_id = "00000000000000000000000000000000", public_key_file = "/etc/kycedge/'
    for role, file in (("hpke", "carrier-hpke.pub"), ("receipt", "carrier-receipt.pub")):
        text = text.replace(zero + file, f'key_id = "{kid[role]}", public_key_file = "/etc/kycedge/{file}')
    text = text.replace('source = "picamera"', f'source = "replay"\nreplay_path = "{frames}"')
    text = text.replace('host = "mqtt.carrier.example"', 'host = "127.0.0.1"')
    text = text.replace("port = 8883", "port = 1")
    text = text.replace("[updates]\nenabled = true", "[updates]\nenabled = false")
    cfg = ETC / "kycedge.toml"
    cfg.write_text(text)
    os.chown(cfg, 0, grp.getgrnam("kycedge").gr_gid)
    cfg.chmod(0o640)
    # the example's missing files are the only problems config check finds on a fresh install
    out = run(str(VENV / "bin" / "kycedge"), "config", "check", str(cfg), user="kycedge").stdout
    assert out.startswith(f"ok: {cfg}")

    # systemd's RuntimeDirectory=kycedge and NOTIFY_SOCKET, by hand
    run("install", "-d", "-o", "kycedge", "-g", "kycedge", "-m", "0750", "/run/kycedge")
    sock_path = notify_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock_path.chmod(0o777)
    sock.settimeout(1.0)
    env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(sock_path), "LANG": "C.UTF-8"}
    # setpriv execs the daemon itself as kycedge (as systemd's User= does): SIGTERM reaches it
    proc = subprocess.Popen(["setpriv", "--reuid=kycedge", "--regid=kycedge", "--init-groups",
                             str(VENV / "bin" / "kycedge"), "run", "--config", str(cfg)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        messages: list[str] = []
        deadline = time.monotonic() + 90
        while not any("READY=1" in m.split("\n") for m in messages):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, messages
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
        from kycedge.unit.client import ApiClient

        info = ApiClient(unix_socket="/run/kycedge/api.sock", timeout_s=10).info()
        assert info["status"] == "ready", info
        assert info["device_id"] == "unit-0001"
        assert stat.S_IMODE(os.stat("/run/kycedge/api.sock").st_mode) == 0o660
        deadline = time.monotonic() + 30
        while not Path("/run/kycedge/metrics.prom").exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert "kycedge_unit_link_up 0.0" in Path("/run/kycedge/metrics.prom").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
        sock.close()
    assert proc.returncode == 0, err[-3000:]

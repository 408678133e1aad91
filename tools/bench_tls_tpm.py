#!/usr/bin/env python3
"""Can Python's ``ssl`` (so paho) use a TLS client key held by a TPM, through OpenSSL's tpm2
provider? Sets up everything itself and prints what works and what a handshake costs.

    .venv/bin/python tools/bench_tls_tpm.py [--n 30]

Parts, all real and started here (killed at the end): swtpm, a D-Bus session bus and
tpm2-abrmd (a resource manager: the provider needs one, /dev/tpmrm0 on a unit), the key
made by ``openssl genpkey -provider tpm2`` (a TSS2 PEM, the private part never leaves the
TPM), a mutual-TLS ``openssl s_server``, and a Python client in a subprocess per OpenSSL
configuration (OPENSSL_CONF is read once per process). Needs Debian swtpm, swtpm-tools,
tpm2-openssl, tpm2-abrmd, libtss2-tcti-tabrmd0, dbus.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

CLIENT = textwrap.dedent('''
    import ssl, socket, statistics, sys, time
    cert, key, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(sys.argv[5])
    try:
        ctx.load_cert_chain(cert, key)
    except Exception as e:
        print(f"load_cert_chain FAILED: {e}"); sys.exit(0)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port)) as s, \\
                    ctx.wrap_socket(s, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                assert tls.recv(8).startswith(b"HTTP")
                version = tls.version()
        except Exception as e:
            print(f"handshake FAILED: {e}"); sys.exit(0)
        ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    print(f"ok {version}: handshake+request median {statistics.median(ts):.1f} ms, "
          f"p90 {ts[int(0.9 * (n - 1))]:.1f} ms (n={n})")
''')

CONFIGS = {
    "default provider first (tpm2 loaded second)": ["default", "tpm2"],
    "tpm2 provider first": ["tpm2", "default"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


@contextlib.contextmanager
def started(procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=cwd, timeout=120)


def conf(order: list[str]) -> str:
    lines = ["openssl_conf = openssl_init", "[openssl_init]", "providers = provider_sect", "[provider_sect]"]
    lines += [f"{p} = {p}_sect" for p in order]
    for p in order:
        lines += [f"[{p}_sect]", "activate = 1"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    from kycedge import crypto

    d = Path(tempfile.mkdtemp(prefix="kycedge-tls-tpm-"))
    procs: list[subprocess.Popen[bytes]] = []
    with started(procs):
        (d / "tpm").mkdir()
        run(["swtpm_setup", "--tpm2", "--tpmstate", str(d / "tpm"), "--overwrite"], dict(os.environ), d)
        tport = free_port()
        procs.append(subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={d / 'tpm'}", "--server",
             f"type=tcp,port={tport},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={tport + 1},bindaddr=127.0.0.1",
             "--flags", "not-need-init,startup-clear"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(tport, procs[-1], "swtpm")
        bus = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
                             check=True, capture_output=True, text=True, timeout=30).stdout.split()
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=bus[0])
        try:
            procs.append(subprocess.Popen(["tpm2-abrmd", "--session", "--allow-root",
                                           f"--tcti=swtpm:host=127.0.0.1,port={tport}"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.0)
            env["TPM2OPENSSL_TCTI"] = "tabrmd:bus_type=session"
            run(["openssl", "genpkey", "-provider", "tpm2", "-provider", "default", "-algorithm", "EC",
                 "-pkeyopt", "group:P-256", "-out", "tpm.key"], env, d)
            run(["openssl", "req", "-new", "-provider", "tpm2", "-provider", "default", "-key", "tpm.key",
                 "-subj", "/CN=acme\\/dev-tpm", "-out", "tpm.csr"], env, d)
            ca_key, ca = crypto.make_ca("tls-tpm bench CA")
            crypto.save_private_key(d / "ca.key", ca_key)
            crypto.save_certificate(d / "ca.crt", ca)
            sk = crypto.generate_tls_key()
            crypto.save_private_key(d / "server.key", sk)
            crypto.save_certificate(d / "server.crt", crypto.issue_certificate(
                ca_key, ca, crypto.make_csr(sk, "localhost"), server=True, dns_names=("localhost",)))
            soft = crypto.generate_tls_key()
            crypto.save_private_key(d / "soft.key", soft)
            crypto.save_certificate(d / "soft.crt", crypto.issue_certificate(
                ca_key, ca, crypto.make_csr(soft, "acme/dev-soft"), days=30))
            try:  # what kycedge-fleet device issue --csr would do with this CSR
                crypto.csr_from_pem((d / "tpm.csr").read_bytes())
                print("the tpm2 provider's CSR parses with kycedge.crypto")
            except crypto.KeyStoreError as e:
                print(f"the tpm2 provider's CSR is refused by kycedge.crypto (cryptography): {e.message}")
            (d / "ext.cnf").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
                                       "keyUsage=digitalSignature\n")
            run(["openssl", "x509", "-req", "-in", "tpm.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "30", "-extfile", "ext.cnf", "-out", "tpm.crt"], env, d)
            sport = free_port()
            procs.append(subprocess.Popen(
                ["openssl", "s_server", "-accept", str(sport), "-cert", "server.crt", "-key", "server.key",
                 "-CAfile", "ca.crt", "-Verify", "1", "-verify_return_error", "-www", "-quiet"], cwd=d,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(sport, procs[-1], "openssl s_server")
            (d / "client.py").write_text(CLIENT)
            print(f"load: {os.getloadavg()[0]:.2f} (1-min average; 2 cores shared, figures are noisy)")
            cases = [("no provider config", None)] + [(k, v) for k, v in CONFIGS.items()]
            for name, order in cases:
                e = dict(env)
                if order is not None:
                    (d / "openssl.cnf").write_text(conf(order))
                    e["OPENSSL_CONF"] = str(d / "openssl.cnf")
                for key in ("tpm", "soft"):
                    argv = [sys.executable, "client.py", f"{key}.crt", f"{key}.key", str(sport), str(args.n),
                            "ca.crt"]
                    out = subprocess.run(argv, cwd=d, env=e, capture_output=True, text=True,
                                         timeout=600).stdout.strip()
                    label = "TPM key (tpm2 provider)" if key == "tpm" else "software P-256 key"
                    print(f"{name:<46} {label:<24} {out}")
            print(f"load: {os.getloadavg()[0]:.2f}")
        finally:
            with contextlib.suppress(ProcessLookupError, ValueError, IndexError):
                os.kill(int(bus[1]), signal.SIGTERM)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The composed config file: validation messages, file checks, schema, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kycedge.core.errors import ConfigError
from kycedge.unit.cli import main
from kycedge.unit.daemon import settings

MINIMAL = """
[daemon]
tenant = "acme"
device_id = "unit-0001"

[uplink]
tls = false
host = "127.0.0.1"
port = 1883
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "kycedge.toml"
    p.write_text(text)
    return p


def test_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    s = settings.load(write(tmp_path, MINIMAL))
    assert s.daemon.device_id == "unit-0001"
    assert s.session.timeout_s == 30.0
    assert s.capture.source == "picamera"
    assert s.updates.enabled is False


@pytest.mark.parametrize(("extra", "message"), [
    ("[session]\ntimeout_s = 0\n", r"session\.timeout_s: expected a number in \[1\.0, 600\.0\], got 0"),
    ("[session]\ntimeuot_s = 5\n", r"session\.timeuot_s: unknown key; expected one of: .*timeout_s"),
    ("[capture]\nsource = \"usb\"\n", r"capture\.source: expected one of 'replay', 'picamera', 'v4l2', "
                                      r"'gstreamer', got string 'usb'"),
    ("[capture]\nwidth = \"640\"\n",
     r"capture\.width: expected an integer in \[64, 4096\], got string '640'"),
    ("[api]\ntcp_host = \"0.0.0.0\"\ntcp_port = 4501\n", r"expected a loopback address, got '0\.0\.0\.0'"),
    ("[outbox]\nmax_count = 0\n", r"outbox\.max_count: expected an integer in \[1, 10000000\], got 0"),
    ("[nonsense]\n", r"nonsense: unknown key"),
])
def test_bad_values_name_key_expected_and_actual(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings.load(write(tmp_path, MINIMAL + extra))


def test_required_sections_and_identity(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="uplink: required key is missing"):
        settings.load(write(tmp_path, '[daemon]\ntenant = "acme"\ndevice_id = "u1"\n'))
    with pytest.raises(ConfigError, match=r"daemon\.tenant: expected .*got 'ACME'"):
        settings.load(write(tmp_path, MINIMAL.replace('"acme"', '"ACME"')))
    with pytest.raises(ConfigError, match=r"daemon\.tpm_tcti: expected empty or a TCTI starting with one of "
                                          r"device:, swtpm:, mssim:, tabrmd:, got '/dev/tpm0'"):
        settings.load(write(tmp_path, MINIMAL.replace('[daemon]\n', '[daemon]\ntpm_tcti = "/dev/tpm0"\n', 1)))
    text = MINIMAL.replace('[daemon]\n', '[daemon]\ntpm_tcti = "device:/dev/tpmrm0"\n', 1)
    tpm = settings.load(write(tmp_path, text))
    assert tpm.daemon.tpm_tcti == "device:/dev/tpmrm0"


def test_file_checks(tmp_path: Path) -> None:
    s = settings.load(write(tmp_path, MINIMAL + f"""
[carrier_keys]
hpke = [{{ key_id = "{'a' * 32}", public_key_file = "{tmp_path}/missing.pub" }}]
"""))
    problems = settings.check_files(s)
    assert any("carrier_keys.hpke[0].public_key_file: expected an existing file, got missing path" in p
               for p in problems)
    assert any(p.startswith("carrier_keys.receipt: expected at least one") for p in problems)


def test_reload_diff_splits_safe_and_restart_keys(tmp_path: Path) -> None:
    a = settings.load(write(tmp_path, MINIMAL))
    b = settings.load(write(tmp_path, MINIMAL + '[session]\ntimeout_s = 45\n[capture]\nfps = 10\n'))
    applied, restart = settings.reload_diff(a, b)
    assert applied == ["session.timeout_s"]
    assert restart == ["capture.fps"]


def test_cli_check_and_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, MINIMAL)
    assert main(["config", "check", "--no-files", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {good}")
    assert main(["config", "check", str(good)]) == 2
    assert "carrier_keys.hpke: expected at least one" in capsys.readouterr().err
    bad = write(tmp_path, MINIMAL + "[session]\nbest_of = true\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kycedge: error: bad-config: ")
    assert "session.best_of: expected an integer in [1, 100], got boolean true" in err
    assert main(["config", "schema"]) == 0
    sch = json.loads(capsys.readouterr().out)
    assert sch["$schema"].endswith("2020-12/schema")
    assert sch["required"] == ["daemon", "uplink"]
    assert sch["properties"]["session"]["properties"]["timeout_s"]["maximum"] == 600.0
    assert sch["additionalProperties"] is False


def test_a_provisioned_units_config_passes_the_full_check(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from kycedge.lab.harness import Lab

    lab = Lab.create(tmp_path / "lab")
    lab.provision(tmp_path / "models", {})
    lab.scene.mkdir(exist_ok=True)
    s = settings.load(lab.config_path)
    assert settings.check_files(s) == []
    assert main(["config", "check", str(lab.config_path)]) == 0
    assert "camera replay" in capsys.readouterr().out
    (lab.unit_state / "device-tls.pem").unlink()
    assert main(["config", "check", str(lab.config_path)]) == 2
    assert "uplink.key_file: expected an existing file, got missing path" in capsys.readouterr().err


def test_uplink_client_id_is_the_units_identity_or_empty(tmp_path: Path) -> None:
    """The broker binds the client id to the certificate (ADR 0010): a unit configured with
    another id would be refused at every CONNECT, so the config says so at load time."""
    def with_id(client_id: str) -> Path:
        return write(tmp_path, MINIMAL.replace("port = 1883", f'port = 1883\nclient_id = "{client_id}"'))

    assert settings.load(with_id("acme/unit-0001")).uplink.client_id == "acme/unit-0001"
    with pytest.raises(ConfigError, match=r"uplink\.client_id: expected empty or 'acme/unit-0001' .*"
                                          r"got 'acme\.unit-0001'"):
        settings.load(with_id("acme.unit-0001"))


@pytest.mark.parametrize(("extra", "message"), [
    ("[api]\nsocket_mode = 0o666\n",
     r"api\.socket_mode: expected no write permission for others .*got 0o666: a socket others can write"),
    ("[api]\nsocket_mode = 0o662\n", r"api\.socket_mode: expected no write permission for others"),
    ('[api]\nallowed_origins = ["null"]\n',
     r"api\.allowed_origins\[0\]: expected a scheme://host\[:port\] origin, got 'null': browsers send"),
    ('[api]\nallowed_origins = ["https://app.example", "*"]\n', r"api\.allowed_origins\[1\]: .*wildcard"),
    ('[api]\nallowed_origins = ["https://app.example/path"]\n',
     r"api\.allowed_origins\[0\]: expected an origin"),
    ('[api]\nsocket_path = "' + "x" * 100_000 + '"\n',
     r"api\.socket_path: expected at most 4096 characters, got 100000"),
    ('[api]\nallowed_origins = [' + '"https://a.example",' * 2000 + ']\n',
     r"api\.allowed_origins: expected an array of at most 1024 values, got 2000"),
])
def test_risky_and_oversized_values_are_refused_with_a_reason(tmp_path: Path, extra: str,
                                                              message: str) -> None:
    """Issue 10 item 14: these were accepted (a world-writable camera socket, Origin: null,
    10 MB strings)."""
    with pytest.raises(ConfigError, match=message):
        settings.load(write(tmp_path, MINIMAL + extra))


def test_safe_api_values_still_load(tmp_path: Path) -> None:
    s = settings.load(write(tmp_path, MINIMAL + '[api]\nsocket_mode = 0o600\nallowed_origins = '
                            '["https://agent-app.example", "http://localhost:8080", "http://[::1]:4501"]\n'))
    assert s.api.socket_mode == 0o600
    assert len(s.api.allowed_origins) == 3


def test_deep_nesting_is_a_clear_error_not_a_traceback(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, MINIMAL + "[session]\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["config", "check", "--no-files", str(p)]) == 2
    err = capsys.readouterr().err
    assert "nested deeper than the parser can follow" in err
    assert "Traceback" not in err
    assert "RecursionError" not in err


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + "# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="expected a config file of at most 1048576 bytes"):
        settings.load(p)


def test_config_check_reports_every_problem_one_line_each(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10 item 14: ``config check`` reported only the first problem."""
    p = write(tmp_path, MINIMAL + "[session]\nbest_of = true\ntimeout_s = 0\ntypo_key = 1\n"
                                  '[api]\nsocket_mode = 0o666\nallowed_origins = ["null", "*"]\n'
                                  "[outbox]\nmax_bytes = 1\n")
    assert main(["config", "check", "--no-files", str(p)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert all(ln.startswith(f"kycedge: error: bad-config: {p}: ") for ln in lines), lines
    keys = [ln.split(": ")[4] for ln in lines]
    assert sorted(keys) == sorted(["session.typo_key", "session.best_of", "session.timeout_s",
                                   "api.socket_mode", "api.allowed_origins[0]", "api.allowed_origins[1]",
                                   "outbox.max_bytes"]), lines

"""CarrierKeysConfig: carrier public keys from the unit's TOML config."""

from __future__ import annotations

from pathlib import Path

import pytest
from kycedge import crypto
from kycedge.core.config import from_mapping, json_schema, load_toml
from kycedge.core.errors import ConfigError, KeyStoreError
from kycedge.unit.carrier_keys import CarrierKeysConfig


def _write(tmp_path: Path) -> tuple[list[tuple[str, Path]], tuple[str, Path]]:
    hpke = []
    for i in range(2):
        k = crypto.generate_kem_key()
        crypto.save_public_key(tmp_path / f"hpke{i}.pub", k.public_key())
        hpke.append((crypto.key_id(k.public_key()), tmp_path / f"hpke{i}.pub"))
    r = crypto.generate_signing_key()
    crypto.save_public_key(tmp_path / "receipt.pub", r.public_key())
    return hpke, (crypto.key_id(r.public_key()), tmp_path / "receipt.pub")


def test_load_from_toml_newest_first(tmp_path: Path) -> None:
    hpke, receipt = _write(tmp_path)
    toml = "hpke = [\n" + "".join(
        f'  {{ key_id = "{kid}", public_key_file = "{p}" }},\n' for kid, p in hpke) + "]\n"
    toml += f'receipt = [ {{ key_id = "{receipt[0]}", public_key_file = "{receipt[1]}" }} ]\n'
    (tmp_path / "c.toml").write_text(toml)
    cfg = load_toml(tmp_path / "c.toml", CarrierKeysConfig)
    keys = cfg.load_hpke_keys()
    assert [k.key_id for k in keys] == [hpke[0][0], hpke[1][0]]
    assert list(cfg.load_receipt_keys()) == [receipt[0]]


def test_mismatched_id_and_bad_entries(tmp_path: Path) -> None:
    hpke, receipt = _write(tmp_path)
    entry = {"key_id": hpke[1][0], "public_key_file": str(hpke[0][1])}
    cfg = from_mapping(CarrierKeysConfig, {"hpke": [entry]})
    with pytest.raises(KeyStoreError, match="expected key id"):
        cfg.load_hpke_keys()
    with pytest.raises(KeyStoreError):  # an Ed25519 file where an X25519 key is expected
        from_mapping(CarrierKeysConfig, {"hpke": [{"key_id": receipt[0],
                                                   "public_key_file": str(receipt[1])}]}).load_hpke_keys()
    with pytest.raises(ConfigError, match="32 lowercase hex"):
        from_mapping(CarrierKeysConfig, {"hpke": [{"key_id": "ABC", "public_key_file": "x"}]})
    with pytest.raises(ConfigError, match="distinct"):
        from_mapping(CarrierKeysConfig, {"hpke": [{"key_id": "a" * 32, "public_key_file": "x"}] * 2})
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(CarrierKeysConfig, {"hpke": [{"key_id": "a" * 32, "public_key_file": "x", "pem": "y"}]})
    with pytest.raises(KeyStoreError) as ei:
        CarrierKeysConfig().load_hpke_keys()
    assert ei.value.reason == "missing-key"
    with pytest.raises(KeyStoreError):
        CarrierKeysConfig().load_receipt_keys()


def test_schema_describes_section() -> None:
    schema = json_schema(CarrierKeysConfig)
    assert set(schema["properties"]) == {"hpke", "receipt"}

"""Pytest fixtures for the real Mosquitto of :mod:`kycedge.lab.broker` (the harness itself
does not import pytest). Re-export them from a conftest.py::

    from support.broker import broker, pki  # noqa: F401
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kycedge.lab.broker import MOSQUITTO, Broker, Pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip(f"mosquitto not found at {MOSQUITTO} (apt-get install mosquitto)")
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", pki)
    b.start()
    try:
        yield b
    finally:
        b.kill()

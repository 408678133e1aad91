"""Real-broker fixtures (shared with other test packages via tests/support/broker.py)."""

from kycedge.lab.broker import broker, pki  # noqa: F401

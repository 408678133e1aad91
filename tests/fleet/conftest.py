"""Fleet-side tests drive a real unit update agent: share the updates fixtures."""

from tests.unit.updates.conftest import daemon, fleet, unit_on_v1

__all__ = ["daemon", "fleet", "unit_on_v1"]

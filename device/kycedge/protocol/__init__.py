"""The contract between the unit, the carrier and the fleet, pure (no I/O): ids, the
envelope and receipt, MQTT topics, status and announce messages, the bundle and rollout
format, and the match rule. May import ``core`` and ``crypto`` only."""

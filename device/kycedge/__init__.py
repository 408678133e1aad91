"""kycedge: face-capture firmware for real-name SIM registration units.

The package is the device firmware (capture → template → sealed envelope → outbox →
MQTT), the carrier's reference receiver (``kycedge.carrier``) and the fleet tools
(``kycedge.fleet``). See README.md for users and docs/ for operators and integrators.
"""

__version__ = "0.1.0"

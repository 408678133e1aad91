"""The demo and the harness that tests, tools and the demo share: a fleet CA, a real
Mosquitto, the receiver and the daemon on loopback. May import every wing; nothing in the
package imports it (the ``kycedge demo`` command names it in the unit's command table)."""

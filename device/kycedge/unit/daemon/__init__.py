"""The capture daemon: wiring only (sessions, local API, sd_notify, signals).

- :mod:`kycedge.unit.daemon.settings` — the whole TOML config, composed from each
  component's section dataclass;
- :mod:`kycedge.unit.daemon.notify` — ``sd_notify`` by hand over ``$NOTIFY_SOCKET``;
- :mod:`kycedge.unit.session` — the registration session state machine;
- :mod:`kycedge.unit.api` — the local HTTP/JSON API (Unix socket or 127.0.0.1);
- :mod:`kycedge.unit.daemon.service` — the process: start-up, main loop, signals;
- :mod:`kycedge.core.logs` — structured JSON log lines with no biometric data.
"""

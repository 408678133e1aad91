"""The capture daemon: wiring only (sessions, local API, sd_notify, signals).

- :mod:`kycedge.daemon.settings` — the whole TOML config, composed from each
  component's section dataclass;
- :mod:`kycedge.daemon.notify` — ``sd_notify`` by hand over ``$NOTIFY_SOCKET``;
- :mod:`kycedge.daemon.session` — the registration session state machine;
- :mod:`kycedge.daemon.api` — the local HTTP/JSON API (Unix socket or 127.0.0.1);
- :mod:`kycedge.daemon.service` — the process: start-up, main loop, signals;
- :mod:`kycedge.daemon.logs` — structured JSON log lines with no biometric data.
"""

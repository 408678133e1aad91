"""The firmware of the capture unit: frame sources, sessions, the sealer, the durable
outbox and its forwarder, the local API, the model-update agent and the daemon (the
composition root). Never imports ``carrier``, ``fleet`` or ``lab``."""

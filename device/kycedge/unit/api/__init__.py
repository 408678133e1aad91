"""The local API: HTTP/JSON on a Unix socket and/or loopback TCP for the agent's app.

Documented for integrators in ``docs/local-api.md`` and, machine-readable, in
``openapi.json`` (served at ``/v1/openapi.json``). Like the MOSIP SBI device service it
listens on the loopback interface only and has a device-status call; unlike SBI it uses
plain REST verbs and a streamed event list instead of custom HTTP methods.

Modules: :mod:`.config` ([api]), :mod:`.guard` (Host/Origin/CORS rules), :mod:`.jsonbody`
(request body limits), :mod:`.events` (stream framing), :mod:`.app` (routes, Starlette),
:mod:`.server` (uvicorn, listeners, timeouts).
"""

from kycedge.unit.api.app import MessageLookup, StatusProvider
from kycedge.unit.api.config import ApiConfig
from kycedge.unit.api.server import ApiServer, ApiServerError

__all__ = ["ApiConfig", "ApiServer", "ApiServerError", "MessageLookup", "StatusProvider"]

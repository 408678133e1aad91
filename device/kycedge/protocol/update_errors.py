"""Errors of the model-update path (one stable ``reason`` code each).

Every failure of a fetch, a verification, a self-test or a switch is an
:class:`UpdateError` whose ``reason`` says what happened; the agent reports the code on
the status topic and leaves the unit on its current models.

Reason codes (stable, documented in docs/updates.md):

========================  ==============================================================
``bad-signature``         metadata not signed by a trusted key
``signature-threshold``   some valid signatures, fewer than the role's threshold
``expired-metadata``      metadata past its expiry (freeze attack)
``rollback-attack``       metadata or bundle version lower than the one already trusted
``mix-and-match``         metadata version differs from what snapshot/timestamp promise
``hash-mismatch``         a file's length or sha256 differs from the signed value
``oversized``             a download exceeds its length limit
``unreachable``           repository could not be reached (connection, timeout)
``http-error``            repository answered with an HTTP error status
``bad-metadata``          metadata malformed or otherwise rejected by TUF
``bad-bundle``            bundle manifest malformed, unsafe path, inconsistent
``incompatible-firmware`` bundle needs a newer firmware than this unit runs
``no-bundle``             repository publishes no bundle for this unit
``selftest-failed``       staged models failed the golden-image self-test
``load-failed``           the daemon could not load the new models after the switch
``health-check-failed``   the daemon failed health checks after the switch
``crash-loop``            the daemon restarted repeatedly during the trial period
``stage-failed``          staging directory could not be written
``storage-full``          the unit's state filesystem is full (download or staging)
``read-only``             the unit's state filesystem is read-only
``switch-failed``         the symlink swap failed
========================  ==============================================================
"""

from __future__ import annotations

from kycedge.core.errors import UpdateError

__all__ = [
    "BundleError",
    "FetchError",
    "MetadataError",
    "SelfTestError",
    "StageError",
    "SwitchError",
    "UpdateError",
]


class FetchError(UpdateError):
    """Download failed: unreachable repository, HTTP error, oversized or truncated file."""

    reason = "unreachable"


class MetadataError(UpdateError):
    """TUF metadata or a target failed verification (reason says which check)."""

    reason = "bad-metadata"


class BundleError(UpdateError):
    """The bundle manifest is malformed, unsafe or does not apply to this unit."""

    reason = "bad-bundle"


class StageError(UpdateError):
    """The staged set could not be written or does not match its manifest."""

    reason = "stage-failed"


class SelfTestError(UpdateError):
    """Staged models failed the golden-image self-test."""

    reason = "selftest-failed"


class SwitchError(UpdateError):
    """Activating or rolling back a model set failed."""

    reason = "switch-failed"

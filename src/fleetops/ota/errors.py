"""Why the OTA system refuses something: one exception per trust boundary.

Every refusal carries a short machine-readable ``kind`` (what class of problem, e.g.
``"rollback"``, ``"freeze"``) and a human sentence, so tests and operators see *why*.
"""

from __future__ import annotations

from fleetops.core.errors import ConfigError, FleetopsError, ValidationError


class OtaError(FleetopsError):
    """Base of the OTA errors."""


class KeyStoreError(ConfigError):
    """A key file that is missing, unreadable or not a usable ed25519 key."""


class UpdateRefused(OtaError):  # noqa: N818
    """The vehicle refused an update (metadata or image failed verification).

    ``kind`` names the attack class or check that failed: ``rollback``, ``freeze``,
    ``bad-signature``, ``bad-hash``, ``mix-and-match``, ``endless-data``,
    ``director-image-mismatch``, ``hardware-mismatch``, ``malformed``, ``partial-install``,
    ``download``.
    """

    exit_code = 2

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"update refused ({kind}): {message}")
        self.kind = kind
        self.reason = message


class ManifestRejected(ValidationError):  # noqa: N818
    """The director refused a vehicle's manifest (bad signature, replay, unknown ECU ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"manifest rejected ({kind}): {message}")
        self.kind = kind
        self.reason = message


class UnknownVehicle(ValidationError):  # noqa: N818
    """A VIN the director has no inventory for."""

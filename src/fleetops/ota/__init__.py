"""Secure over-the-air updates: Uptane on TUF (``fleetops.ota``).

Light to import; the parts load on first use::

    from fleetops.ota import ImageRepository, Director, Primary, create_app
"""

from __future__ import annotations

from fleetops.core.lazy import lazy_getattr

_EXPORTS = {
    "AssignmentSource": "fleetops.ota.director",
    "Director": "fleetops.ota.director",
    "EcuInfo": "fleetops.ota.director",
    "StaticAssignments": "fleetops.ota.director",
    "ImageRepository": "fleetops.ota.repository",
    "Thresholds": "fleetops.ota.repository",
    "KeyStore": "fleetops.ota.keys",
    "UpdateRefused": "fleetops.ota.errors",
    "ManifestRejected": "fleetops.ota.errors",
    "Primary": "fleetops.ota.vehicle",
    "Secondary": "fleetops.ota.vehicle",
    "SimulatedEcu": "fleetops.ota.vehicle",
    "CycleResult": "fleetops.ota.vehicle",
    "Limits": "fleetops.ota.vehicle",
    "provision": "fleetops.ota.vehicle",
    "HttpTransport": "fleetops.ota.transport",
    "LocalTransport": "fleetops.ota.transport",
    "OtaServer": "fleetops.ota.store",
    "create_app": "fleetops.ota.server",
}

__all__ = [
    "AssignmentSource",
    "CycleResult",
    "Director",
    "EcuInfo",
    "HttpTransport",
    "ImageRepository",
    "KeyStore",
    "Limits",
    "LocalTransport",
    "ManifestRejected",
    "OtaServer",
    "Primary",
    "Secondary",
    "SimulatedEcu",
    "StaticAssignments",
    "Thresholds",
    "UpdateRefused",
    "create_app",
    "provision",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS)

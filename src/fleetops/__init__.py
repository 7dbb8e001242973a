"""fleetops: operate a connected, software-defined vehicle fleet.

The notebook-facing API lives here; each capability is a sub-package.
"""

from fleetops.core.lake import Lake
from fleetops.core.types import CanFrames, Ecu, Vehicle
from fleetops.core.vss import SignalCatalog, SignalSpec, default_catalog

__version__ = "0.1.0"

__all__ = [
    "CanFrames",
    "Ecu",
    "Lake",
    "SignalCatalog",
    "SignalSpec",
    "Vehicle",
    "__version__",
    "default_catalog",
]

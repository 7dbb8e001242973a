"""Where things live by default; every path can be overridden by option or environment."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "FLEETOPS_DATA"
LAKE_ENV = "FLEETOPS_LAKE"
SHARED_DATA_ENV = "FLEETOPS_SHARED_DATA"


def data_dir() -> Path:
    """Working folder for lakes and reports (``$FLEETOPS_DATA``, default ``./fleetops-data``)."""
    return Path(os.environ.get(DATA_DIR_ENV, "fleetops-data"))


def lake_dir() -> Path:
    """The embedded lake (``$FLEETOPS_LAKE``, default ``<data dir>/lake``)."""
    return Path(os.environ.get(LAKE_ENV, data_dir() / "lake"))


def shared_data_dir() -> Path:
    """The public datasets (``$FLEETOPS_SHARED_DATA``, default ``../shared/data``)."""
    return Path(os.environ.get(SHARED_DATA_ENV, Path("..") / "shared" / "data"))

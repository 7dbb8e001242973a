"""python-tuf and securesystemslib names in one place.

Both packages re-export these names without ``__all__``, which ``mypy --strict`` (no
implicit re-export) refuses; importing them once here keeps every other module clean.
"""

from securesystemslib.signer import (  # type: ignore[attr-defined]
    CryptoSigner,
    Signature,
    SSlibKey,
)
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Role,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.ngclient import Updater, UpdaterConfig  # type: ignore[attr-defined]

__all__ = [
    "CryptoSigner",
    "MetaFile",
    "Metadata",
    "Role",
    "Root",
    "SSlibKey",
    "Signature",
    "Signed",
    "Snapshot",
    "TargetFile",
    "Targets",
    "Timestamp",
    "Updater",
    "UpdaterConfig",
]

"""TUF repositories built with ``tuf.api.metadata``: the image repository and the root
handling both Uptane repositories share.

Layout on the filesystem (one folder per repository)::

    <repo>/image/metadata/{1.root,root,targets,snapshot,timestamp}.json
    <repo>/image/targets/<image name>
    <repo>/director/metadata/{N.root,root}.json     (the director's per-vehicle roles
                                                      live in fleetops.ota.director)

Roles sign with keys from a :class:`~fleetops.ota.keys.KeyStore`; root keys are offline and
only needed by :meth:`RootKeeper.rotate` / :meth:`RootKeeper.revoke` and at creation.
Consistent snapshots are off: roles are fetched by name, and the client checks each
role's version against the snapshot/timestamp that lists it (TUF §5).
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.serialization.json import JSONSerializer

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.ota._tuf import (
    CryptoSigner,
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
from fleetops.ota.errors import KeyStoreError
from fleetops.ota.keys import KeyStore

TOP_ROLES = ("root", "targets", "snapshot", "timestamp")
EXPIRY: dict[str, timedelta] = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
}
SERIALIZER = JSONSerializer(compact=True)
METADATA_NAME = re.compile(
    r"^(?:(?P<version>[1-9][0-9]{0,9})\.)?(?P<role>root|targets|snapshot|timestamp)\.json$"
)
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def to_bytes(md: Metadata[Any]) -> bytes:
    data: bytes = md.to_bytes(SERIALIZER)
    return data


def check_target_name(name: str) -> str:
    if not TARGET_NAME.match(name) or ".." in name:
        raise ValidationError(
            f"image name {name!r} is not allowed (letters, digits, '.', '_', '+', '-'; "
            "at most 128 characters)"
        )
    return name


@dataclass(frozen=True, slots=True)
class Thresholds:
    """How many keys each top-level role has, and how many must sign."""

    root: tuple[int, int] = (3, 2)  # (keys, threshold)
    targets: tuple[int, int] = (1, 1)
    snapshot: tuple[int, int] = (1, 1)
    timestamp: tuple[int, int] = (1, 1)

    def of(self, role: str) -> tuple[int, int]:
        keys, threshold = cast(tuple[int, int], getattr(self, role))
        if not 1 <= threshold <= keys:
            raise ConfigError(f"{role}: threshold {threshold} of {keys} keys is impossible")
        return keys, threshold


class RootKeeper:
    """The root metadata of one repository: creation, rotation, revocation, signing."""

    def __init__(self, name: str, metadata_dir: Path, keys: KeyStore) -> None:
        self.name = name
        self.metadata_dir = Path(metadata_dir)
        self.keys = keys
        path = self.metadata_dir / "root.json"
        if not path.exists():
            raise ConfigError(f"no {name} repository at {self.metadata_dir} (run `ota keys init`)")
        self.root: Metadata[Root] = Metadata[Root].from_bytes(path.read_bytes())
        self._signers: dict[str, list[CryptoSigner]] = {}

    @classmethod
    def create(
        cls, name: str, metadata_dir: Path, keys: KeyStore, thresholds: Thresholds
    ) -> RootKeeper:
        metadata_dir = Path(metadata_dir)
        if (metadata_dir / "root.json").exists():
            raise ConfigError(f"a {name} repository already exists at {metadata_dir}")
        metadata_dir.mkdir(parents=True, exist_ok=True)
        root = Root(expires=utcnow() + EXPIRY["root"], consistent_snapshot=False)
        signers: list[CryptoSigner] = []
        for role in TOP_ROLES:
            count, threshold = thresholds.of(role)
            for _ in range(count):
                signer = keys.generate(name, role)
                root.add_key(signer.public_key, role)
                if role == "root":
                    signers.append(signer)
            root.roles[role].threshold = threshold
        md = Metadata(root)
        for signer in signers:
            md.sign(signer, append=True)
        data = to_bytes(md)
        atomic_write(metadata_dir / "1.root.json", data)
        atomic_write(metadata_dir / "root.json", data)
        return cls(name, metadata_dir, keys)

    # -- signing with online keys -------------------------------------------------------
    def role(self, role: str) -> Role:
        return self.root.signed.roles[role]

    def signers(self, role: str) -> list[CryptoSigner]:
        cached = self._signers.get(role)
        if cached is None:
            wanted = self.role(role).keyids
            cached = self.keys.signers(self.name, role, wanted)
            threshold = self.role(role).threshold
            if len(cached) < threshold:
                raise KeyStoreError(
                    f"{self.name} {role}: only {len(cached)} of the {threshold} keys needed "
                    f"are in {self.keys.online if role != 'root' else self.keys.root}"
                )
            self._signers[role] = cached
        return cached

    def sign(self, signed: Signed, role: str) -> tuple[Metadata[Any], bytes]:
        md: Metadata[Any] = Metadata(signed)
        for signer in self.signers(role)[: self.role(role).threshold]:
            md.sign(signer, append=True)
        return md, to_bytes(md)

    # -- root changes (offline keys) ---------------------------------------------------
    def _publish_root(self, new: Root, exclude: str | None = None) -> Metadata[Root]:
        """Sign ``new`` with the old root threshold and the new one; write N.root.json."""
        old = self.root.signed
        new.version = old.version + 1
        new.expires = utcnow() + EXPIRY["root"]
        md = Metadata(new)
        old_ids = [k for k in old.roles["root"].keyids if k != exclude]
        if len(old_ids) < old.roles["root"].threshold:
            old_ids = list(old.roles["root"].keyids)
        signers = {
            s.public_key.keyid: s
            for s in self.keys.signers(self.name, "root", old_ids + new.roles["root"].keyids)
        }
        for keyid in dict.fromkeys(
            old_ids[: max(old.roles["root"].threshold, 0)] + new.roles["root"].keyids
        ):
            if keyid in signers:
                md.sign(signers[keyid], append=True)
        payload = md.signed_bytes
        try:
            old.verify_delegate("root", payload, md.signatures)  # old threshold
            new.verify_delegate("root", payload, md.signatures)  # new threshold
        except UnsignedMetadataError as exc:
            raise KeyStoreError(
                f"cannot sign {self.name} root v{new.version}: {exc} "
                "(are the offline root keys in --root-keys?)"
            ) from None
        data = to_bytes(md)
        atomic_write(self.metadata_dir / f"{new.version}.root.json", data)
        atomic_write(self.metadata_dir / "root.json", data)
        self.root = md
        self._signers.clear()
        return md

    def _copy(self) -> Root:
        return copy.deepcopy(self.root.signed)

    def rotate(self, role: str) -> list[str]:
        """Replace every key of ``role`` by fresh ones; returns the new keyids."""
        if role not in TOP_ROLES:
            raise ValidationError(f"unknown role {role!r} (one of {', '.join(TOP_ROLES)})")
        new = self._copy()
        old_ids = list(new.roles[role].keyids)
        fresh = [self.keys.generate(self.name, role) for _ in old_ids]
        for signer in fresh:
            new.add_key(signer.public_key, role)
        for keyid in old_ids:
            new.revoke_key(keyid, role)
        self._publish_root(new)
        for keyid in old_ids:
            self.keys.remove(self.name, role, keyid)
        return [s.public_key.keyid for s in fresh]

    def revoke(self, role: str, keyid: str) -> None:
        """Remove one key from ``role``: signatures by it no longer count."""
        if role not in TOP_ROLES:
            raise ValidationError(f"unknown role {role!r} (one of {', '.join(TOP_ROLES)})")
        new = self._copy()
        matches = [k for k in new.roles[role].keyids if k.startswith(keyid)]
        if len(matches) != 1:
            raise ValidationError(f"{self.name} {role} has no single key starting {keyid!r}")
        if len(new.roles[role].keyids) - 1 < new.roles[role].threshold:
            raise ValidationError(
                f"revoking {matches[0][:16]} would leave {role} below its threshold "
                f"{new.roles[role].threshold}: rotate instead, or add a key first"
            )
        new.revoke_key(matches[0], role)
        self._publish_root(new, exclude=matches[0] if role == "root" else None)
        self.keys.remove(self.name, role, matches[0])

    def root_bytes(self, version: int | None = None) -> bytes | None:
        name = "root.json" if version is None else f"{version}.root.json"
        try:
            return (self.metadata_dir / name).read_bytes()
        except FileNotFoundError:
            return None


def image_custom(hardware_ids: list[str], version: str, release_counter: int) -> dict[str, Any]:
    return {
        "hardware_ids": sorted(hardware_ids),
        "version": version,
        "release_counter": release_counter,
    }


class ImageRepository:
    """The Uptane image repository: every image the OEM has signed off, by hardware id."""

    def __init__(self, path: Path, keys: KeyStore) -> None:
        self.path = Path(path)
        self.metadata_dir = self.path / "image" / "metadata"
        self.targets_dir = self.path / "image" / "targets"
        self.root = RootKeeper("image", self.metadata_dir, keys)
        self._cache: dict[str, bytes] = {}
        self._stamp = -1
        self._targets: Targets | None = None
        self._set_stamp_files()
        self.reload()

    def _set_stamp_files(self) -> None:
        # joined once: reload() runs on every check-in, where joining cost more than the stat
        self._timestamp_file = self.metadata_dir / "timestamp.json"
        self._root_file = self.metadata_dir / "root.json"

    @classmethod
    def create(
        cls, path: Path, keys: KeyStore, thresholds: Thresholds | None = None
    ) -> ImageRepository:
        path = Path(path)
        RootKeeper.create("image", path / "image" / "metadata", keys, thresholds or Thresholds())
        (path / "image" / "targets").mkdir(parents=True, exist_ok=True)
        repo = cls.__new__(cls)
        repo.path = path
        repo.metadata_dir = path / "image" / "metadata"
        repo.targets_dir = path / "image" / "targets"
        repo.root = RootKeeper("image", repo.metadata_dir, keys)
        repo._cache, repo._stamp, repo._targets = {}, -1, None
        repo._set_stamp_files()
        repo._write_chain(Targets(expires=utcnow() + EXPIRY["targets"]), snapshot_version=0)
        return repo

    # -- reading -----------------------------------------------------------------------
    def reload(self) -> None:
        """Pick up changes another process (``ota publish``) made; cheap when none."""
        try:
            stamp = self._timestamp_file.stat().st_mtime_ns
            root_stamp = self._root_file.stat().st_mtime_ns
        except FileNotFoundError:
            raise ConfigError(f"no image repository at {self.path} (run `ota keys init`)") from None
        stamp = max(stamp, root_stamp)
        if stamp == self._stamp:
            return
        self._cache = {
            role: (self.metadata_dir / f"{role}.json").read_bytes() for role in TOP_ROLES
        }
        self.root = RootKeeper("image", self.metadata_dir, self.root.keys)
        self._targets = Metadata[Targets].from_bytes(self._cache["targets"]).signed
        self._stamp = stamp

    def metadata(self, name: str) -> bytes | None:
        """The bytes of ``{role}.json`` or ``{N}.root.json``, or None if there is none."""
        match = METADATA_NAME.match(name)
        if match is None:
            return None
        self.reload()
        if match["version"]:
            if match["role"] != "root":
                return None
            return self.root.root_bytes(int(match["version"]))
        return self._cache.get(match["role"])

    @property
    def targets(self) -> Mapping[str, TargetFile]:
        self.reload()
        assert self._targets is not None
        return self._targets.targets

    def image_path(self, name: str) -> Path | None:
        if not TARGET_NAME.match(name) or ".." in name or name not in self.targets:
            return None
        path = self.targets_dir / name
        return path if path.is_file() else None

    # -- writing -----------------------------------------------------------------------
    def _write_chain(self, targets: Targets, snapshot_version: int) -> None:
        _, targets_bytes = self.root.sign(targets, "targets")
        snapshot = Snapshot(
            version=snapshot_version + 1,
            expires=utcnow() + EXPIRY["snapshot"],
            meta={"targets.json": MetaFile(version=targets.version)},
        )
        _, snapshot_bytes = self.root.sign(snapshot, "snapshot")
        self._write_timestamp(snapshot_bytes, snapshot.version, targets_bytes)

    def _write_timestamp(
        self, snapshot_bytes: bytes, snapshot_version: int, targets_bytes: bytes | None
    ) -> None:
        old = self.metadata_dir / "timestamp.json"
        version = 1
        if old.exists():
            version = Metadata[Timestamp].from_bytes(old.read_bytes()).signed.version + 1
        timestamp = Timestamp(
            version=version,
            expires=utcnow() + EXPIRY["timestamp"],
            snapshot_meta=MetaFile(
                version=snapshot_version,
                length=len(snapshot_bytes),
                hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()},
            ),
        )
        _, ts_bytes = self.root.sign(timestamp, "timestamp")
        if targets_bytes is not None:
            atomic_write(self.metadata_dir / "targets.json", targets_bytes)
        atomic_write(self.metadata_dir / "snapshot.json", snapshot_bytes)
        atomic_write(self.metadata_dir / "timestamp.json", ts_bytes)
        self._stamp = -1
        self.reload()

    def add_image(
        self,
        name: str,
        data: bytes,
        hardware_ids: list[str],
        version: str,
        release_counter: int | None = None,
    ) -> TargetFile:
        """Publish an image: store it, list it in targets, new snapshot and timestamp."""
        check_target_name(name)
        if not hardware_ids or any(not h.strip() for h in hardware_ids):
            raise ValidationError("an image needs at least one --hardware-id")
        if name in self.targets:
            raise ValidationError(f"{name} is already published; images are immutable")
        if release_counter is None:  # one more than any image for these hardware ids
            release_counter = 1 + max(
                (
                    int(t.custom.get("release_counter", 0))
                    for t in self.targets.values()
                    if set(t.custom.get("hardware_ids", ())) & set(hardware_ids)
                ),
                default=0,
            )
        target = TargetFile.from_data(name, data, ["sha256", "sha512"])
        target.unrecognized_fields["custom"] = image_custom(hardware_ids, version, release_counter)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.targets_dir / name, data)
        self._resign(lambda t: t.targets.__setitem__(name, target))
        return target

    def remove_image(self, name: str) -> None:
        if name not in self.targets:
            raise ValidationError(f"{name} is not published")
        self._resign(lambda t: t.targets.pop(name))

    def _resign(self, change: Any) -> None:
        current = Metadata[Targets].from_bytes(self._cache["targets"]).signed
        change(current)
        current.version += 1
        current.expires = utcnow() + EXPIRY["targets"]
        snapshot = Metadata[Snapshot].from_bytes(self._cache["snapshot"]).signed
        self._write_chain(current, snapshot.version)

    def resign_all(self) -> None:
        """New targets, snapshot and timestamp (after a key rotation or revocation)."""
        self._resign(lambda t: None)

    def refresh_timestamp(self, *, min_left: timedelta = EXPIRY["timestamp"] / 2) -> bool:
        """Re-sign the timestamp if it expires within ``min_left``; True if it did."""
        ts = Metadata[Timestamp].from_bytes(self._cache["timestamp"]).signed
        if ts.expires - utcnow() > min_left:
            return False
        self._write_timestamp(self._cache["snapshot"], ts.snapshot_meta.version, None)
        return True

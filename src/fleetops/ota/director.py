"""The Uptane director: vehicle inventory, manifest verification and per-vehicle
targets metadata.

The director shares one root (``<repo>/director/metadata``) across the fleet and keeps,
per vehicle, its own targets / snapshot / timestamp under
``<repo>/director/vehicles/<VIN>/`` with the inventory (ECU serial → hardware id, key,
installed image, counters) next to them. *Which* image an ECU should run is decided by an
:class:`AssignmentSource` (a static table here; a rollout campaign elsewhere); the
director only turns that decision into signed metadata, after checking the image is in
the image repository for that hardware id.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.types import validate_vin
from fleetops.ota import manifest as mf
from fleetops.ota._tuf import Metadata, MetaFile, Snapshot, SSlibKey, TargetFile, Targets, Timestamp
from fleetops.ota.errors import KeyStoreError, ManifestRejected, UnknownVehicle
from fleetops.ota.keys import KeyStore, key_from_dict
from fleetops.ota.repository import (
    EXPIRY,
    METADATA_NAME,
    ImageRepository,
    RootKeeper,
    Thresholds,
    atomic_write,
    utcnow,
)


@runtime_checkable
class AssignmentSource(Protocol):
    """Decides which image (a target name of the image repository) an ECU should run."""

    def assignment(
        self, vin: str, ecu_serial: str, hardware_id: str, installed: str | None
    ) -> str | None: ...


class StaticAssignments:
    """A fixed table: per hardware id, optionally overridden per (VIN, ECU serial).

    Saved as ``<repo>/director/assignments.json`` so that ``ota publish --assign`` and a
    running server agree; :meth:`reload` picks up changes.
    """

    def __init__(
        self,
        by_hardware: Mapping[str, str] | None = None,
        by_ecu: Mapping[tuple[str, str], str] | None = None,
        path: Path | None = None,
    ) -> None:
        self.by_hardware = dict(by_hardware or {})
        self.by_ecu = dict(by_ecu or {})
        self.path = path
        self._stamp = -1

    def assignment(
        self, vin: str, ecu_serial: str, hardware_id: str, installed: str | None
    ) -> str | None:
        if self.by_ecu:
            chosen = self.by_ecu.get((vin, ecu_serial))
            if chosen is not None:
                return chosen
        return self.by_hardware.get(hardware_id)

    @classmethod
    def load(cls, path: Path) -> StaticAssignments:
        table = cls(path=path)
        table.reload()
        return table

    def reload(self) -> None:
        if self.path is None:
            return
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if stamp == self._stamp:
            return
        data = orjson.loads(self.path.read_bytes())
        self.by_hardware = dict(data.get("by_hardware", {}))
        self.by_ecu = {(e["vin"], e["ecu_serial"]): e["target"] for e in data.get("by_ecu", [])}
        self._stamp = stamp

    def save(self) -> None:
        if self.path is None:
            raise ConfigError("this assignment table has no file")
        data = {
            "by_hardware": self.by_hardware,
            "by_ecu": [
                {"vin": v, "ecu_serial": s, "target": t} for (v, s), t in self.by_ecu.items()
            ],
        }
        atomic_write(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2))


@dataclass(frozen=True, slots=True)
class EcuInfo:
    """What registration records of one ECU: serial, hardware id, public key."""

    serial: str
    hardware_id: str
    public_key: dict[str, Any]


@dataclass(slots=True)
class EcuRecord:
    serial: str
    hardware_id: str
    key: SSlibKey
    installed: str | None = None
    report_counter: int = -1
    last_sig: str = ""
    last_result: dict[str, Any] | None = None
    verify_key: mf.VerifyKey = field(init=False)

    def __post_init__(self) -> None:
        self.verify_key = mf.VerifyKey.of(self.key)


@dataclass(slots=True)
class VehicleRecord:
    vin: str
    primary_serial: str
    ecus: dict[str, EcuRecord]
    counter: int = 0
    versions: dict[str, int] = field(
        default_factory=lambda: {"targets": 0, "snapshot": 0, "timestamp": 0}
    )
    assigned: dict[str, list[str]] = field(default_factory=dict)  # serial -> [name, sha256]
    root_version: int = 0
    timestamp_renew: float = 0.0  # epoch seconds after which the timestamp is re-signed
    targets_renew: float = 0.0
    metadata: dict[str, bytes] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "vin": self.vin,
                "primary_serial": self.primary_serial,
                "counter": self.counter,
                "versions": self.versions,
                "assigned": self.assigned,
                "root_version": self.root_version,
                "timestamp_renew": self.timestamp_renew,
                "targets_renew": self.targets_renew,
                "ecus": [
                    {
                        "serial": e.serial,
                        "hardware_id": e.hardware_id,
                        "public_key": {"keyid": e.key.keyid, **e.key.to_dict()},
                        "installed": e.installed,
                        "report_counter": e.report_counter,
                        "last_sig": e.last_sig,
                        "last_result": e.last_result,
                    }
                    for e in self.ecus.values()
                ],
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> VehicleRecord:
        d = orjson.loads(data)
        ecus = {
            e["serial"]: EcuRecord(
                serial=e["serial"],
                hardware_id=e["hardware_id"],
                key=key_from_dict(e["public_key"]),
                installed=e["installed"],
                report_counter=e["report_counter"],
                last_sig=e["last_sig"],
                last_result=e["last_result"],
            )
            for e in d["ecus"]
        }
        return cls(
            vin=d["vin"],
            primary_serial=d["primary_serial"],
            ecus=ecus,
            counter=d["counter"],
            versions=d["versions"],
            assigned=d["assigned"],
            root_version=d["root_version"],
            timestamp_renew=d["timestamp_renew"],
            targets_renew=d["targets_renew"],
        )


class Director:
    """Inventory + manifest checks + per-vehicle director metadata, on the filesystem."""

    def __init__(
        self,
        path: Path,
        keys: KeyStore,
        image_repo: ImageRepository,
        source: AssignmentSource | None = None,
        *,
        max_manifest_bytes: int = mf.MAX_MANIFEST_BYTES,
    ) -> None:
        self.path = Path(path)
        self.root = RootKeeper("director", self.path / "director" / "metadata", keys)
        self.vehicles_dir = self.path / "director" / "vehicles"
        self.image_repo = image_repo
        self.source: AssignmentSource = source or StaticAssignments.load(
            self.path / "director" / "assignments.json"
        )
        self.max_manifest_bytes = max_manifest_bytes
        self._records: dict[str, VehicleRecord] = {}
        self._lock = threading.Lock()
        # joined once: checked on every check-in, where building the path cost more than the stat
        self._root_file = self.root.metadata_dir / "root.json"
        self._root_stamp = self._root_file.stat().st_mtime_ns
        # check-ins append one line to a journal (a full inventory rewrite costs ms on
        # slow filesystems); the latest line per VIN wins over inventory.json
        self._journal_path = self.path / "director" / "journal.jsonl"
        self._journal: dict[str, dict[str, Any]] = {}
        if self._journal_path.exists():
            with self._journal_path.open("rb") as f:
                for line in f:
                    try:
                        entry = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # a torn last line after a crash
                    self._journal[entry["vin"]] = entry
        self._journal_file = self._journal_path.open("ab") if self.vehicles_dir.exists() else None

    @staticmethod
    def create(path: Path, keys: KeyStore, thresholds: Thresholds | None = None) -> RootKeeper:
        keeper = RootKeeper.create(
            "director", Path(path) / "director" / "metadata", keys, thresholds or Thresholds()
        )
        (Path(path) / "director" / "vehicles").mkdir(parents=True, exist_ok=True)
        return keeper

    # -- inventory -----------------------------------------------------------------------
    def _dir(self, vin: str) -> Path:
        return self.vehicles_dir / vin

    def record(self, vin: str) -> VehicleRecord:
        rec = self._records.get(vin)
        if rec is not None:
            return rec
        try:
            vin = validate_vin(vin)
        except ValidationError:
            raise UnknownVehicle(f"{vin!r} is not a VIN") from None
        folder = self._dir(vin)
        try:
            rec = VehicleRecord.from_json((folder / "inventory.json").read_bytes())
        except FileNotFoundError:
            raise UnknownVehicle(f"vehicle {vin} is not registered with the director") from None
        for role in ("targets", "snapshot", "timestamp"):
            rec.metadata[role] = (folder / f"{role}.json").read_bytes()
        entry = self._journal.pop(vin, None)
        if entry is not None and entry["counter"] > rec.counter:
            rec.counter = entry["counter"]
            for serial, (installed, counter, sig, result) in entry["ecus"].items():
                ecu = rec.ecus[serial]
                if counter > ecu.report_counter or (
                    counter == ecu.report_counter and sig != ecu.last_sig
                ):
                    ecu.installed, ecu.report_counter, ecu.last_sig, ecu.last_result = (
                        installed,
                        counter,
                        sig,
                        result,
                    )
        self._records[vin] = rec
        return rec

    def vins(self) -> Iterator[str]:
        if self.vehicles_dir.exists():
            for child in sorted(self.vehicles_dir.iterdir()):
                if (child / "inventory.json").exists():
                    yield child.name

    def inventory(self, vin: str) -> dict[str, dict[str, Any]]:
        """ECU serial → {hardware_id, installed, last_result} for one vehicle."""
        rec = self.record(vin)
        return {
            s: {
                "hardware_id": e.hardware_id,
                "installed": e.installed,
                "last_result": e.last_result,
            }
            for s, e in rec.ecus.items()
        }

    def register(
        self, vin: str, primary_serial: str, ecus: list[EcuInfo], *, replace: bool = False
    ) -> None:
        vin = validate_vin(vin)
        if not ecus:
            raise ValidationError("a vehicle needs at least one ECU")
        serials = [e.serial for e in ecus]
        if len(set(serials)) != len(serials):
            raise ValidationError(f"{vin}: duplicate ECU serials")
        if primary_serial not in serials:
            raise ValidationError(f"{vin}: primary {primary_serial!r} is not one of its ECUs")
        folder = self._dir(vin)
        if not replace and (folder / "inventory.json").exists():
            raise ValidationError(f"{vin} is already registered")
        rec = VehicleRecord(
            vin=vin,
            primary_serial=primary_serial,
            ecus={
                e.serial: EcuRecord(e.serial, e.hardware_id, key_from_dict(e.public_key))
                for e in ecus
            },
        )
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._resign(rec, {})
            self._records[vin] = rec
            self._persist(rec, metadata=True)

    def _append_journal(self, rec: VehicleRecord, changed: list[EcuRecord]) -> None:
        if self._journal_file is None:
            self._journal_file = self._journal_path.open("ab")
        line = {
            "vin": rec.vin,
            "counter": rec.counter,
            "ecus": {
                e.serial: [e.installed, e.report_counter, e.last_sig, e.last_result]
                for e in changed
            },
        }
        self._journal_file.write(orjson.dumps(line) + b"\n")
        self._journal_file.flush()

    def compact(self) -> None:
        """Fold the journal into the inventory files and empty it."""
        with self._lock:
            for vin in list(self._journal):
                self.record(vin)
            for rec in self._records.values():
                self._persist(rec, metadata=False)
            if self._journal_file is not None:
                self._journal_file.close()
            self._journal_path.write_bytes(b"")
            self._journal_file = self._journal_path.open("ab")

    def _persist(self, rec: VehicleRecord, *, metadata: bool) -> None:
        folder = self._dir(rec.vin)
        if metadata:
            for role in ("targets", "snapshot", "timestamp"):
                atomic_write(folder / f"{role}.json", rec.metadata[role])
        atomic_write(folder / "inventory.json", rec.to_json())

    # -- metadata ------------------------------------------------------------------------
    def _check_root(self) -> None:
        """Another process (``ota keys rotate``) may have signed a new director root."""
        stamp = self._root_file.stat().st_mtime_ns
        if stamp != self._root_stamp:
            self.root = RootKeeper("director", self.root.metadata_dir, self.root.keys)
            self._root_stamp = stamp

    def metadata(self, vin: str, name: str) -> bytes | None:
        match = METADATA_NAME.match(name)
        if match is None:
            return None
        self._check_root()
        if match["role"] == "root":
            return self.root.root_bytes(int(match["version"]) if match["version"] else None)
        if match["version"]:
            return None
        rec = self.record(vin)
        with self._lock:
            self._keep_fresh(rec)
        return rec.metadata[match["role"]]

    def _resign(self, rec: VehicleRecord, desired: dict[str, list[str]]) -> None:
        """New targets (listing ``desired``), snapshot and timestamp for one vehicle."""
        now = utcnow()
        entries: dict[str, TargetFile] = {}
        images = self.image_repo.targets
        for serial, (name, _) in sorted(desired.items()):
            image = images.get(name)
            if image is None:  # withdrawn from the image repository since
                continue
            entries[name] = TargetFile(
                length=image.length,
                hashes=dict(image.hashes),
                path=name,
                unrecognized_fields={
                    "custom": {"ecu_serial": serial, "hardware_id": rec.ecus[serial].hardware_id}
                },
            )
        v = rec.versions
        v["targets"] += 1
        v["snapshot"] += 1
        targets = Targets(version=v["targets"], expires=now + EXPIRY["targets"], targets=entries)
        _, targets_bytes = self.root.sign(targets, "targets")
        snapshot = Snapshot(
            version=v["snapshot"],
            expires=now + EXPIRY["targets"],
            meta={"targets.json": MetaFile(version=v["targets"])},
        )
        _, snapshot_bytes = self.root.sign(snapshot, "snapshot")
        rec.metadata["targets"] = targets_bytes
        rec.metadata["snapshot"] = snapshot_bytes
        rec.assigned = desired
        rec.root_version = self.root.root.signed.version
        rec.targets_renew = (now + EXPIRY["targets"] / 2).timestamp()
        self._resign_timestamp(rec)

    def _resign_timestamp(self, rec: VehicleRecord) -> None:
        now = utcnow()
        rec.versions["timestamp"] += 1
        ts = Timestamp(
            version=rec.versions["timestamp"],
            expires=now + EXPIRY["timestamp"],
            snapshot_meta=MetaFile(version=rec.versions["snapshot"]),
        )
        _, rec.metadata["timestamp"] = self.root.sign(ts, "timestamp")
        rec.timestamp_renew = (now + EXPIRY["timestamp"] / 2).timestamp()

    def _keep_fresh(self, rec: VehicleRecord) -> bool:
        """Re-sign what is half-way to expiry or signed under an older root."""
        now = utcnow().timestamp()
        if rec.root_version != self.root.root.signed.version or now >= rec.targets_renew:
            self._resign(rec, rec.assigned)
            self._persist(rec, metadata=True)
            return True
        if now >= rec.timestamp_renew:
            self._resign_timestamp(rec)
            self._persist(rec, metadata=True)
            return True
        return False

    # -- check-in -------------------------------------------------------------------------
    def check_in(self, vin: str, body: bytes) -> bytes:
        """Verify a vehicle version manifest, update the inventory, return the timestamp.

        Raises :class:`ManifestRejected` (nothing recorded) for a malformed manifest, a bad
        signature, a replay, or an ECU the vehicle does not have.
        """
        rec = self.record(vin)
        envelope = mf.load(body, self.max_manifest_bytes)
        signed = envelope["signed"]
        if signed.get("vin") != rec.vin:
            raise ManifestRejected(
                "wrong-vehicle", f"manifest is for {signed.get('vin')!r}, not {rec.vin}"
            )
        if signed.get("primary_ecu_serial") != rec.primary_serial:
            raise ManifestRejected("unknown-ecu", "manifest names a different primary ECU")
        primary = rec.ecus[rec.primary_serial]
        mf.verify(envelope, primary.verify_key, f"{rec.vin} vehicle manifest")
        counter = signed.get("counter")
        if not isinstance(counter, int) or isinstance(counter, bool):
            raise ManifestRejected("malformed", "manifest counter is not an integer")
        reports = signed.get("ecu_version_reports")
        if not isinstance(reports, dict):
            raise ManifestRejected("malformed", "no ecu_version_reports object")
        with self._lock:
            if counter <= rec.counter:
                raise ManifestRejected(
                    "replay",
                    f"manifest counter {counter} is not above the last one ({rec.counter})",
                )
            accepted: list[tuple[EcuRecord, mf.EcuReport, str]] = []
            for serial, report in reports.items():
                ecu = rec.ecus.get(serial)
                if ecu is None:
                    raise ManifestRejected("unknown-ecu", f"{rec.vin} has no ECU {serial!r}")
                if not isinstance(report, dict) or not isinstance(report.get("signed"), dict):
                    raise ManifestRejected(
                        "malformed", f"ECU {serial}: report is not a signed object"
                    )
                sigs = report.get("signatures")
                sig = (
                    sigs[0].get("sig", "")
                    if isinstance(sigs, list) and sigs and isinstance(sigs[0], dict)
                    else ""
                )
                parsed = mf.parse_report(report["signed"])
                if parsed.ecu_serial != serial:
                    raise ManifestRejected(
                        "malformed", f"report under {serial} is for {parsed.ecu_serial}"
                    )
                if parsed.hardware_id != ecu.hardware_id:
                    raise ManifestRejected(
                        "hardware-mismatch",
                        f"ECU {serial} reports hardware {parsed.hardware_id!r}, registered {ecu.hardware_id!r}",
                    )
                if parsed.report_counter == ecu.report_counter and sig and sig == ecu.last_sig:
                    continue  # the same report, already verified: nothing new from this ECU
                mf.verify(report, ecu.verify_key, f"ECU {serial} version report")
                if parsed.report_counter <= ecu.report_counter:
                    raise ManifestRejected(
                        "replay",
                        f"ECU {serial} report counter {parsed.report_counter} is not above {ecu.report_counter}",
                    )
                accepted.append((ecu, parsed, sig))
            # all checks passed: record
            rec.counter = counter
            for ecu, parsed, sig in accepted:
                ecu.installed = parsed.installed_image
                ecu.report_counter = parsed.report_counter
                ecu.last_sig = sig
                ecu.last_result = parsed.install_result
            changed = self._assign(rec)
            if not changed:
                changed = self._keep_fresh(rec)
            else:
                self._persist(rec, metadata=True)
            if not changed:
                self._append_journal(rec, [a[0] for a in accepted])
            return rec.metadata["timestamp"]

    def _assign(self, rec: VehicleRecord) -> bool:
        desired: dict[str, list[str]] = {}
        names: set[str] = set()
        images = self.image_repo.targets
        for serial, ecu in rec.ecus.items():
            name = self.source.assignment(rec.vin, serial, ecu.hardware_id, ecu.installed)
            if name is None:
                continue
            image = images.get(name)
            if image is None or ecu.hardware_id not in image.custom.get("hardware_ids", ()):
                continue  # not a signed-off image for this hardware: never assigned
            if name in names:
                continue  # one entry per image name in a targets file
            names.add(name)
            desired[serial] = [name, image.hashes.get("sha256", "")]
        self._check_root()
        if desired == rec.assigned and rec.root_version == self.root.root.signed.version:
            return False
        self._resign(rec, desired)
        return True

    @property
    def root_version(self) -> int:
        self._check_root()
        return self.root.root.signed.version


def director_keys_ok(director: Director) -> None:
    """Fail early (at server start) if the online director keys are missing."""
    for role in ("targets", "snapshot", "timestamp"):
        try:
            director.root.signers(role)
        except KeyStoreError as exc:
            raise ConfigError(str(exc)) from None


def read_targets(data: bytes) -> Targets:
    return Metadata[Targets].from_bytes(data).signed

"""The vehicle side of Uptane: simulated ECUs with A/B slots, secondaries doing partial
verification, and the primary doing full verification of both repositories.

Trust boundaries: the primary trusts only the two roots it was provisioned with (and
roots they sign, per TUF); a secondary trusts only the director root. Nothing is
installed unless every check passed; an install writes the inactive slot and switches
only after the written bytes verify, so an interrupted install leaves the old image
running. The outcome is reported in the next ECU version report.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tuf.api import exceptions as tuf_exc

from fleetops.core.errors import ConfigError
from fleetops.ota import manifest as mf
from fleetops.ota._tuf import (
    CryptoSigner,
    Metadata,
    Root,
    TargetFile,
    Targets,
    Updater,
    UpdaterConfig,
)
from fleetops.ota.director import EcuInfo
from fleetops.ota.errors import ManifestRejected, UpdateRefused
from fleetops.ota.keys import generate_signer, public_key_dict, signer_from_pem, write_private
from fleetops.ota.repository import atomic_write, utcnow
from fleetops.ota.transport import SCHEME, Transport, TransportFetcher


@dataclass(frozen=True, slots=True)
class Limits:
    """The most bytes the vehicle accepts of each thing (endless-data attacks)."""

    root: int = 64 * 1024
    timestamp: int = 16 * 1024
    snapshot: int = 64 * 1024
    targets: int = 1024 * 1024
    image: int = 256 * 1024 * 1024

    def updater_config(self) -> UpdaterConfig:
        return UpdaterConfig(
            max_root_rotations=32,
            root_max_length=self.root,
            timestamp_max_length=self.timestamp,
            snapshot_max_length=self.snapshot,
            targets_max_length=self.targets,
        )


def refusal(exc: Exception, what: str) -> UpdateRefused:
    """Name the attack class a python-tuf error stands for."""
    text = f"{what}: {exc}"
    if isinstance(exc, UpdateRefused):
        return exc
    if isinstance(exc, tuf_exc.ExpiredMetadataError):
        return UpdateRefused("freeze", text)
    if isinstance(exc, tuf_exc.UnsignedMetadataError):
        return UpdateRefused("bad-signature", text)
    if isinstance(exc, tuf_exc.BadVersionNumberError):
        kind = "mix-and-match" if str(exc).startswith("Expected") else "rollback"
        return UpdateRefused(kind, text)
    if isinstance(exc, tuf_exc.LengthOrHashMismatchError):
        return UpdateRefused("bad-hash", text)
    if isinstance(exc, tuf_exc.DownloadLengthMismatchError):
        return UpdateRefused("endless-data", text)
    if isinstance(exc, tuf_exc.DownloadError):
        return UpdateRefused("download", text)
    if isinstance(exc, tuf_exc.RepositoryError):
        return UpdateRefused("malformed", text)
    return UpdateRefused("malformed", text)


class InstallInterrupted(Exception):  # noqa: N818 - a simulated event, not a bug
    """Simulated power loss during an install (tests)."""


class SimulatedEcu:
    """An ECU with two flash slots: ``slot_a.bin`` / ``slot_b.bin`` and ``state.json``."""

    def __init__(self, folder: Path, signer: CryptoSigner) -> None:
        self.folder = Path(folder)
        self.signer = signer
        self.state: dict[str, Any] = orjson.loads((self.folder / "state.json").read_bytes())

    @classmethod
    def create(
        cls, folder: Path, serial: str, hardware_id: str, factory_image: str, signer: CryptoSigner
    ) -> SimulatedEcu:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = f"factory image {factory_image}\n".encode()
        (folder / "slot_a.bin").write_bytes(data)
        state = {
            "serial": serial,
            "hardware_id": hardware_id,
            "active": "a",
            "image": factory_image,
            "sha256": hashlib.sha256(data).hexdigest(),
            "release_counter": 0,
            "report_counter": 0,
            "result": None,
            "attacks_detected": "",
            "director_targets_version": 0,
        }
        atomic_write(folder / "state.json", orjson.dumps(state))
        return cls(folder, signer)

    @property
    def serial(self) -> str:
        return str(self.state["serial"])

    @property
    def hardware_id(self) -> str:
        return str(self.state["hardware_id"])

    @property
    def installed(self) -> str | None:
        image = self.state["image"]
        return None if image is None else str(image)

    @property
    def release_counter(self) -> int:
        return int(self.state["release_counter"])

    def running(self) -> bytes:
        return (self.folder / f"slot_{self.state['active']}.bin").read_bytes()

    def save(self) -> None:
        atomic_write(self.folder / "state.json", orjson.dumps(self.state))

    def note(self, result: dict[str, Any], attack: str = "") -> None:
        """Remember an outcome for the next version report (and sign a new one)."""
        self.state["result"] = result
        self.state["attacks_detected"] = attack
        self.state["report_counter"] = int(self.state["report_counter"]) + 1
        self.save()

    def install(
        self,
        target: TargetFile,
        data: bytes,
        release_counter: int,
        *,
        interrupt_after: int | None = None,
    ) -> None:
        """Write the inactive slot, verify it, then switch; the old image runs until then."""
        inactive = "b" if self.state["active"] == "a" else "a"
        slot = self.folder / f"slot_{inactive}.bin"
        with slot.open("wb") as f:
            if interrupt_after is not None:
                f.write(data[:interrupt_after])
                f.flush()
                raise InstallInterrupted(f"power lost after {interrupt_after} bytes")
            f.write(data)
        written = slot.read_bytes()
        target.verify_length_and_hashes(written)  # raises LengthOrHashMismatchError
        self.state.update(
            active=inactive,
            image=target.path,
            sha256=hashlib.sha256(written).hexdigest(),
            release_counter=release_counter,
        )
        self.note({"target": target.path, "success": True, "reason": ""})

    def report(self) -> dict[str, Any]:
        """This ECU's signed version report (re-signed only when something changed)."""
        s = self.state
        return mf.ecu_report(
            self.signer,
            ecu_serial=self.serial,
            hardware_id=self.hardware_id,
            installed_image=self.installed,
            report_counter=int(s["report_counter"]),
            timestamp="",
            install_result=s["result"],
            attacks_detected=str(s["attacks_detected"]),
        )


def custom(target: TargetFile) -> dict[str, Any]:
    value = target.unrecognized_fields.get("custom")
    return value if isinstance(value, dict) else {}


class Secondary:
    """Partial verification: director targets only (signature, version, expiry, own entry)."""

    def __init__(self, ecu: SimulatedEcu) -> None:
        self.ecu = ecu
        self._root_path = ecu.folder / "director_root.json"

    @property
    def director_root(self) -> Metadata[Root]:
        return Metadata[Root].from_bytes(self._root_path.read_bytes())

    def provision(self, director_root: bytes) -> None:
        atomic_write(self._root_path, director_root)

    def update_root(self, new_root: bytes) -> None:
        """Accept the next director root if the current one and itself both sign it."""
        current = self.director_root.signed
        try:
            md = Metadata[Root].from_bytes(new_root)
            if md.signed.version != current.version + 1:
                raise UpdateRefused(
                    "rollback",
                    f"director root v{md.signed.version} does not follow v{current.version}",
                )
            current.verify_delegate(Root.type, md.signed_bytes, md.signatures)
            md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
        except (tuf_exc.RepositoryError, ValueError) as exc:
            raise refusal(exc, f"secondary {self.ecu.serial} director root") from None
        atomic_write(self._root_path, new_root)

    def verify(self, director_targets: bytes) -> TargetFile | None:
        """The director's entry for this ECU, after partial verification (or raise)."""
        root = self.director_root.signed
        what = f"secondary {self.ecu.serial}"
        try:
            md = Metadata[Targets].from_bytes(director_targets)
            root.verify_delegate(Targets.type, md.signed_bytes, md.signatures)
        except (tuf_exc.RepositoryError, ValueError) as exc:
            raise refusal(exc, f"{what} director targets") from None
        targets = md.signed
        last = int(self.ecu.state["director_targets_version"])
        if targets.version < last:
            raise UpdateRefused(
                "rollback", f"{what}: director targets v{targets.version} is older than v{last}"
            )
        if targets.is_expired():
            raise UpdateRefused(
                "freeze", f"{what}: director targets expired {targets.expires:%Y-%m-%d %H:%M}"
            )
        mine = [
            t for t in targets.targets.values() if custom(t).get("ecu_serial") == self.ecu.serial
        ]
        if len(mine) > 1:
            raise UpdateRefused("malformed", f"{what}: {len(mine)} images for one ECU")
        self.ecu.state["director_targets_version"] = targets.version
        self.ecu.save()
        if not mine:
            return None
        if custom(mine[0]).get("hardware_id") != self.ecu.hardware_id:
            raise UpdateRefused(
                "hardware-mismatch", f"{what}: image is for {custom(mine[0]).get('hardware_id')!r}"
            )
        return mine[0]

    def receive(
        self,
        director_targets: bytes,
        image: bytes,
        release_counter: int,
        *,
        interrupt_after: int | None = None,
    ) -> bool:
        """Verify and install; True if a new image now runs. Raises UpdateRefused."""
        target = self.verify(director_targets)
        if target is None or target.hashes.get("sha256") == self.ecu.state["sha256"]:
            return False
        try:
            target.verify_length_and_hashes(image)
        except tuf_exc.LengthOrHashMismatchError as exc:
            raise UpdateRefused("bad-hash", f"secondary {self.ecu.serial}: {exc}") from None
        self.ecu.install(target, image, release_counter, interrupt_after=interrupt_after)
        return True


@dataclass
class CycleResult:
    """What one update cycle did."""

    refused: UpdateRefused | None = None
    installed: dict[str, str] = field(default_factory=dict)  # serial -> image
    failed: dict[str, str] = field(default_factory=dict)  # serial -> reason
    up_to_date: bool = False
    bytes_received: int = 0

    @property
    def ok(self) -> bool:
        return self.refused is None and not self.failed


class Primary:
    """A vehicle: its primary ECU (full verification) and its secondaries."""

    def __init__(self, folder: Path, transport: Transport, limits: Limits | None = None) -> None:
        self.folder = Path(folder)
        self.transport = transport
        self.limits = limits or Limits()
        try:
            self.config: dict[str, Any] = orjson.loads((self.folder / "vehicle.json").read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"no vehicle at {self.folder} (run `ota vehicle register`)") from None
        self.vin = str(self.config["vin"])
        self.primary_serial = str(self.config["primary_serial"])
        self.ecus: dict[str, SimulatedEcu] = {}
        for serial in self.config["ecus"]:
            signer = signer_from_pem((self.folder / "keys" / f"{serial}.pem").read_bytes())
            self.ecus[serial] = SimulatedEcu(self.folder / "ecus" / serial, signer)
        self.secondaries = {
            s: Secondary(e) for s, e in self.ecus.items() if s != self.primary_serial
        }
        self.interrupt: Callable[[str], int | None] = lambda serial: None  # tests: power loss

    @property
    def primary(self) -> SimulatedEcu:
        return self.ecus[self.primary_serial]

    def manifest(self) -> bytes:
        self.config["counter"] = int(self.config["counter"]) + 1
        atomic_write(self.folder / "vehicle.json", orjson.dumps(self.config))
        return mf.vehicle_manifest(
            self.primary.signer,
            vin=self.vin,
            primary_ecu_serial=self.primary_serial,
            counter=int(self.config["counter"]),
            timestamp=utcnow().isoformat(),
            reports={s: e.report() for s, e in self.ecus.items()},
        )

    def _updater(self, repo: str, fetcher: TransportFetcher) -> Updater:
        base = (
            f"{SCHEME}director/{self.vin}/metadata/"
            if repo == "director"
            else f"{SCHEME}image/metadata/"
        )
        return Updater(
            str(self.folder / "primary" / repo),
            base,
            str(self.folder / "primary" / "images"),
            f"{SCHEME}image/targets/",
            fetcher=fetcher,
            config=self.limits.updater_config(),
            bootstrap=None,
        )

    def update(self) -> CycleResult:
        """One full cycle: check in, verify both repositories, download, install, record."""
        result = CycleResult()
        try:
            self._cycle(result)
        except UpdateRefused as exc:
            result.refused = exc
            self.primary.note(
                {"target": None, "success": False, "reason": str(exc)}, attack=exc.kind
            )
        return result

    def _cycle(self, result: CycleResult) -> None:
        try:
            ts, root_version = self.transport.check_in(
                self.vin, self.manifest(), self.limits.timestamp
            )
        except tuf_exc.DownloadError as exc:
            raise refusal(exc, "check-in") from None
        except ManifestRejected as exc:
            raise UpdateRefused("check-in-rejected", exc.reason) from None
        director_fetch = TransportFetcher(
            self.transport,
            prefilled={f"director/{self.vin}/metadata/timestamp.json": ts},
            latest_root=root_version,
        )
        image_fetch = TransportFetcher(self.transport)
        try:
            director = self._updater("director", director_fetch)
            director.refresh()
        except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as exc:
            raise refusal(exc, "director repository") from None
        try:
            image = self._updater("image", image_fetch)
            image.refresh()
        except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as exc:
            raise refusal(exc, "image repository") from None
        director_bytes = (self.folder / "primary" / "director" / "targets.json").read_bytes()
        assigned = Metadata[Targets].from_bytes(director_bytes).signed.targets
        plan = self._match(assigned, image)
        result.up_to_date = not plan
        # download every image before installing any (a partial bundle installs nothing)
        images: dict[str, tuple[TargetFile, bytes, int]] = {}
        for serial, (target, counter) in plan.items():
            try:
                path = image.find_cached_target(target) or image.download_target(target)
            except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as exc:
                raise refusal(exc, f"image {target.path}") from None
            images[serial] = (target, Path(path).read_bytes(), counter)
        result.bytes_received = director_fetch.received + image_fetch.received
        self._sync_roots()
        for serial, (target, data, counter) in images.items():
            try:
                if serial == self.primary_serial:
                    self.primary.install(
                        target, data, counter, interrupt_after=self.interrupt(serial)
                    )
                else:
                    self.secondaries[serial].receive(
                        director_bytes, data, counter, interrupt_after=self.interrupt(serial)
                    )
                result.installed[serial] = target.path
            except (UpdateRefused, InstallInterrupted, tuf_exc.LengthOrHashMismatchError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                result.failed[serial] = reason
                self.ecus[serial].note(
                    {"target": target.path, "success": False, "reason": reason},
                    attack=getattr(exc, "kind", ""),
                )
        self._clean_cache()

    def _match(
        self, assigned: dict[str, TargetFile], image: Updater
    ) -> dict[str, tuple[TargetFile, int]]:
        """Uptane full verification of the director's targets against the image repository."""
        plan: dict[str, tuple[TargetFile, int]] = {}
        for name, d in assigned.items():
            c = custom(d)
            serial, hardware = c.get("ecu_serial"), c.get("hardware_id")
            ecu = self.ecus.get(str(serial))
            if ecu is None:
                raise UpdateRefused(
                    "unknown-ecu", f"director assigns {name} to ECU {serial!r}, not in this vehicle"
                )
            if hardware != ecu.hardware_id:
                raise UpdateRefused(
                    "hardware-mismatch",
                    f"{name}: director says hardware {hardware!r}, ECU {serial} is {ecu.hardware_id!r}",
                )
            try:
                trusted = image.get_targetinfo(name)
            except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as exc:
                raise refusal(exc, "image repository") from None
            if trusted is None:
                raise UpdateRefused(
                    "director-image-mismatch",
                    f"director lists {name}, which the image repository does not",
                )
            common = set(d.hashes) & set(trusted.hashes)
            if (
                trusted.length != d.length
                or not common
                or any(d.hashes[a] != trusted.hashes[a] for a in common)
            ):
                raise UpdateRefused(
                    "director-image-mismatch",
                    f"{name}: director and image repository disagree on length or hashes",
                )
            if ecu.hardware_id not in custom(trusted).get("hardware_ids", ()):
                raise UpdateRefused(
                    "hardware-mismatch",
                    f"{name} is not signed off for hardware {ecu.hardware_id!r}",
                )
            counter = int(custom(trusted).get("release_counter", 0))
            if counter < ecu.release_counter:
                raise UpdateRefused(
                    "rollback",
                    f"{name} (release {counter}) is older than what ECU {serial} runs (release {ecu.release_counter})",
                )
            if trusted.length > self.limits.image:
                raise UpdateRefused(
                    "endless-data",
                    f"{name} is {trusted.length} bytes, over the {self.limits.image} limit",
                )
            if trusted.hashes.get("sha256") == ecu.state["sha256"]:
                continue  # already running it
            plan[str(serial)] = (trusted, counter)
        return plan

    def _sync_roots(self) -> None:
        """Hand new director roots to the secondaries, oldest first."""
        history = self.folder / "primary" / "director" / "root_history"
        for secondary in self.secondaries.values():
            version = secondary.director_root.signed.version
            while (path := history / f"{version + 1}.root.json").exists():
                secondary.update_root(path.read_bytes())
                version += 1

    def _clean_cache(self) -> None:
        cache = self.folder / "primary" / "images"
        if cache.exists():
            for path in cache.iterdir():
                path.unlink()


def provision(
    folder: Path,
    vin: str,
    ecus: list[tuple[str, str, str]],
    director_root: bytes,
    image_root: bytes,
    primary: str | None = None,
) -> tuple[str, list[EcuInfo]]:
    """Build a vehicle on disk: keys, ECUs with factory images, trusted roots.

    ``ecus`` are (name, hardware id, software version); returns the primary serial and
    what the director needs to register the vehicle.
    """
    folder = Path(folder)
    if (folder / "vehicle.json").exists():
        raise ConfigError(f"a vehicle already exists at {folder}")
    infos: list[EcuInfo] = []
    serials: list[str] = []
    for name, hardware_id, version in ecus:
        serial = f"{vin}-{name}"
        signer = generate_signer()
        write_private(folder / "keys" / f"{serial}.pem", signer.private_bytes)
        ecu = SimulatedEcu.create(
            folder / "ecus" / serial,
            serial,
            hardware_id,
            f"factory-{hardware_id}-{version}",
            signer,
        )
        Secondary(ecu).provision(director_root)
        infos.append(EcuInfo(serial, hardware_id, public_key_dict(signer)))
        serials.append(serial)
    names = [e[0] for e in ecus]
    primary_serial = (
        f"{vin}-{primary}" if primary else f"{vin}-{'GW' if 'GW' in names else names[0]}"
    )
    if primary_serial not in serials:
        raise ConfigError(f"no ECU named {primary!r}")
    for repo, root in (("director", director_root), ("image", image_root)):
        (folder / "primary" / repo).mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "primary" / repo / "root.json", root)
    atomic_write(
        folder / "vehicle.json",
        orjson.dumps({"vin": vin, "primary_serial": primary_serial, "counter": 0, "ecus": serials}),
    )
    return primary_serial, infos


def remove_vehicle(folder: Path) -> None:
    shutil.rmtree(folder)

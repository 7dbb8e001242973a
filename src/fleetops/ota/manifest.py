"""Uptane version manifests: what each ECU says it runs, signed by that ECU; and the
vehicle version manifest that bundles them, signed by the primary.

Wire format (JSON)::

    {"signed": {...}, "signatures": [{"keyid": ..., "sig": ...}]}

The signature is ed25519 (securesystemslib) over the ``signed`` object serialised with
sorted keys and no whitespace. An ECU report carries a ``report_counter`` the ECU
increases each time it signs a new report; the vehicle manifest carries a ``counter``
the primary increases on every check-in, so the director refuses replays of either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fleetops.ota._tuf import CryptoSigner, Signature, SSlibKey
from fleetops.ota.errors import KeyStoreError, ManifestRejected

MAX_MANIFEST_BYTES = 64 * 1024


def payload(signed: dict[str, Any]) -> bytes:
    return orjson.dumps(signed, option=orjson.OPT_SORT_KEYS)


def sign(signed: dict[str, Any], signer: CryptoSigner) -> dict[str, Any]:
    sig: Signature = signer.sign(payload(signed))
    return {"signed": signed, "signatures": [{"keyid": sig.keyid, "sig": sig.signature}]}


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """A registered ed25519 public key, loaded once into a ``cryptography`` key object.

    securesystemslib rebuilds that object from hex on every verification; the director
    verifies a manifest on every check-in, so it keeps this one per ECU instead. Only the
    key is kept: every signature is still verified.
    """

    keyid: str
    public: Ed25519PublicKey

    @classmethod
    def of(cls, key: SSlibKey) -> VerifyKey:
        if key.keytype != "ed25519" or key.scheme != "ed25519":
            raise KeyStoreError(f"only ed25519 keys are accepted, got {key.keytype}/{key.scheme}")
        try:
            public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(key.keyval["public"])))
        except (KeyError, ValueError) as exc:
            raise KeyStoreError(f"not an ed25519 public key: {exc}") from None
        return cls(key.keyid, public)


def verify(envelope: dict[str, Any], key: VerifyKey, what: str) -> None:
    """Raise :class:`ManifestRejected` unless ``key`` signed ``envelope['signed']``."""
    sigs = envelope.get("signatures")
    signed = envelope.get("signed")
    if not isinstance(sigs, list) or not isinstance(signed, dict):
        raise ManifestRejected("malformed", f"{what}: no 'signed' object or 'signatures' list")
    for entry in sigs:
        if not isinstance(entry, dict) or entry.get("keyid") != key.keyid:
            continue
        try:
            key.public.verify(bytes.fromhex(str(entry.get("sig", ""))), payload(signed))
        except (InvalidSignature, ValueError):  # ValueError: the signature is not hex
            raise ManifestRejected("bad-signature", f"{what}: signature does not verify") from None
        return
    raise ManifestRejected("bad-signature", f"{what}: not signed by its registered key")


@dataclass(frozen=True, slots=True)
class EcuReport:
    """One ECU version report, parsed (after its signature was checked)."""

    ecu_serial: str
    hardware_id: str
    installed_image: str | None
    report_counter: int
    install_result: dict[str, Any] | None
    attacks_detected: str


def ecu_report(
    signer: CryptoSigner,
    *,
    ecu_serial: str,
    hardware_id: str,
    installed_image: str | None,
    report_counter: int,
    timestamp: str,
    install_result: dict[str, Any] | None = None,
    attacks_detected: str = "",
) -> dict[str, Any]:
    return sign(
        {
            "ecu_serial": ecu_serial,
            "hardware_id": hardware_id,
            "installed_image": installed_image,
            "report_counter": report_counter,
            "timestamp": timestamp,
            "install_result": install_result,
            "attacks_detected": attacks_detected,
        },
        signer,
    )


def vehicle_manifest(
    signer: CryptoSigner,
    *,
    vin: str,
    primary_ecu_serial: str,
    counter: int,
    timestamp: str,
    reports: dict[str, dict[str, Any]],
) -> bytes:
    return orjson.dumps(
        sign(
            {
                "vin": vin,
                "primary_ecu_serial": primary_ecu_serial,
                "counter": counter,
                "timestamp": timestamp,
                "ecu_version_reports": reports,
            },
            signer,
        )
    )


def parse_report(signed: dict[str, Any]) -> EcuReport:
    try:
        installed = signed["installed_image"]
        result = signed.get("install_result")
        report = EcuReport(
            ecu_serial=str(signed["ecu_serial"]),
            hardware_id=str(signed["hardware_id"]),
            installed_image=None if installed is None else str(installed),
            report_counter=int(signed["report_counter"]),
            install_result=result if isinstance(result, dict) else None,
            attacks_detected=str(signed.get("attacks_detected", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestRejected("malformed", f"ECU version report lacks {exc}") from None
    return report


def load(body: bytes, limit: int = MAX_MANIFEST_BYTES) -> dict[str, Any]:
    if len(body) > limit:
        raise ManifestRejected("oversize", f"manifest of {len(body)} bytes exceeds {limit}")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ManifestRejected("malformed", f"manifest is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("signed"), dict):
        raise ManifestRejected("malformed", "manifest is not a signed object")
    return data

"""Ed25519 signing keys on the filesystem.

Online keys (targets, snapshot, timestamp of both repositories) live in one folder; root
keys live in a separate one (``--root-keys``), kept offline and needed only to sign a new
root (rotation, revocation). Each key is one PKCS#8 PEM file, mode 0600, named
``{repo}.{role}.{keyid[:16]}.pem``; the public half and the role membership are in the
repository's root metadata, so losing the private file never changes what is trusted.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetops.ota._tuf import CryptoSigner, SSlibKey
from fleetops.ota.errors import KeyStoreError

ROOT = "root"


def generate_signer() -> CryptoSigner:
    """A fresh ed25519 signer (securesystemslib)."""
    signer: CryptoSigner = CryptoSigner.generate_ed25519()
    return signer


def signer_to_pem(signer: CryptoSigner) -> bytes:
    pem: bytes = signer.private_bytes
    return pem


def signer_from_pem(pem: bytes, *, source: str = "key") -> CryptoSigner:
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyStoreError(f"{source} is not a PEM private key: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyStoreError(f"{source} is not an ed25519 key")
    public = SSlibKey.from_crypto(private.public_key())
    return CryptoSigner(private, public)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    tmp.chmod(0o600)
    tmp.replace(path)


def public_key_dict(signer: CryptoSigner) -> dict[str, object]:
    key: SSlibKey = signer.public_key
    return {"keyid": key.keyid, **key.to_dict()}


def key_from_dict(data: dict[str, object]) -> SSlibKey:
    body = {k: v for k, v in data.items() if k != "keyid"}
    keyid = str(data.get("keyid") or "")
    if not keyid:
        raise KeyStoreError("public key without a keyid")
    try:
        key = SSlibKey.from_dict(keyid, dict(body))
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"not a public key: {exc}") from None
    if key.keytype != "ed25519":
        raise KeyStoreError(f"only ed25519 keys are accepted, got {key.keytype!r}")
    return key


class KeyStore:
    """Private keys of one or more repositories: online folder + offline root folder."""

    def __init__(self, online: Path, root: Path | None = None) -> None:
        self.online = Path(online)
        self.root = None if root is None else Path(root)

    def _folder(self, role: str) -> Path:
        if role == ROOT:
            if self.root is None:
                raise KeyStoreError("this operation needs the offline root keys: give --root-keys")
            return self.root
        return self.online

    def add(self, repo: str, role: str, signer: CryptoSigner) -> Path:
        keyid: str = signer.public_key.keyid
        path = self._folder(role) / f"{repo}.{role}.{keyid[:16]}.pem"
        write_private(path, signer_to_pem(signer))
        return path

    def generate(self, repo: str, role: str) -> CryptoSigner:
        signer = generate_signer()
        self.add(repo, role, signer)
        return signer

    def signers(self, repo: str, role: str, keyids: list[str] | set[str]) -> list[CryptoSigner]:
        """The private keys we hold for ``repo``/``role`` whose keyid is in ``keyids``."""
        folder = self._folder(role)
        wanted = set(keyids)
        found: list[CryptoSigner] = []
        for path in sorted(folder.glob(f"{repo}.{role}.*.pem")):
            if path.name.split(".")[2] not in {k[:16] for k in wanted}:
                continue
            signer = signer_from_pem(path.read_bytes(), source=str(path))
            if signer.public_key.keyid in wanted:
                found.append(signer)
        return found

    def remove(self, repo: str, role: str, keyid: str) -> bool:
        """Delete the private key file of a revoked key; True if there was one."""
        try:
            folder = self._folder(role)
        except KeyStoreError:
            return False
        removed = False
        for path in folder.glob(f"{repo}.{role}.{keyid[:16]}.pem"):
            path.unlink()
            removed = True
        return removed

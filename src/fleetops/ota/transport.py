"""How a vehicle reaches the repositories: over HTTP (httpx) or in-process (a local repo
folder), behind one small interface, and the python-tuf fetcher on top of it.

Every read is bounded: the caller passes the most bytes it will accept and reading stops
there (endless-data attacks). Paths are relative to the server root::

    image/metadata/<role>.json      image/targets/<name>
    director/<VIN>/metadata/<role>.json      POST director/<VIN>/manifest
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import orjson
from tuf.api.exceptions import DownloadError, DownloadHTTPError, DownloadLengthMismatchError
from tuf.ngclient.fetcher import FetcherInterface

from fleetops.core.errors import ServiceUnavailableError
from fleetops.ota.errors import ManifestRejected, UnknownVehicle

SCHEME = "ota://"
CHUNK = 64 * 1024
ROOT_VERSION_HEADER = "x-director-root-version"


class Transport(Protocol):
    def get(self, path: str) -> Iterator[bytes]:
        """Chunks of the resource; raises DownloadHTTPError (404 ...) or DownloadError."""
        ...

    def check_in(self, vin: str, manifest: bytes, max_length: int) -> tuple[bytes, int]:
        """Send a vehicle manifest; returns (director timestamp bytes, director root version)."""
        ...


def read_limited(chunks: Iterator[bytes], max_length: int, what: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_length:
            raise DownloadLengthMismatchError(f"{what}: more than {max_length} bytes, stopped")
        parts.append(chunk)
    return b"".join(parts)


class HttpTransport:
    """Real HTTP with httpx (keep-alive), streaming every body."""

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def get(self, path: str) -> Iterator[bytes]:
        try:
            with self.client.stream("GET", self.base_url + path) as response:
                if response.status_code != 200:
                    raise DownloadHTTPError(
                        f"GET {path}: HTTP {response.status_code}", response.status_code
                    )
                yield from response.iter_bytes(CHUNK)
        except httpx.HTTPError as exc:
            raise DownloadError(f"GET {path}: {exc}") from None

    def check_in(self, vin: str, manifest: bytes, max_length: int) -> tuple[bytes, int]:
        url = f"{self.base_url}director/{vin}/manifest"
        try:
            with self.client.stream(
                "POST", url, content=manifest, headers={"content-type": "application/json"}
            ) as response:
                body = read_limited(response.iter_bytes(CHUNK), max_length, "check-in response")
                if response.status_code in (400, 404, 413):
                    detail = _detail(body)
                    if response.status_code == 404:
                        raise UnknownVehicle(detail.get("reason", f"{vin} is not registered"))
                    raise ManifestRejected(
                        detail.get("kind", "rejected"),
                        detail.get("reason", body[:200].decode(errors="replace")),
                    )
                if response.status_code != 200:
                    raise ServiceUnavailableError(f"check-in: HTTP {response.status_code}")
                root_version = int(response.headers.get(ROOT_VERSION_HEADER, "0"))
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(f"cannot reach {self.base_url}: {exc}") from None
        return body, root_version


def _detail(body: bytes) -> dict[str, str]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    detail = data.get("detail", data) if isinstance(data, dict) else {}
    return (
        {k: str(v) for k, v in detail.items()}
        if isinstance(detail, dict)
        else {"reason": str(detail)}
    )


class LocalTransport:
    """The same requests answered in-process from a repository folder (no server)."""

    def __init__(self, image_repo: object, director: object) -> None:
        from fleetops.ota.director import Director
        from fleetops.ota.repository import ImageRepository

        assert isinstance(image_repo, ImageRepository) and isinstance(director, Director)
        self.image_repo = image_repo
        self.director = director

    def get(self, path: str) -> Iterator[bytes]:
        parts = path.split("/")
        data: bytes | None = None
        if len(parts) == 3 and parts[:2] == ["image", "metadata"]:
            data = self.image_repo.metadata(parts[2])
        elif len(parts) == 3 and parts[:2] == ["image", "targets"]:
            file = self.image_repo.image_path(parts[2])
            if file is not None:
                yield from _file_chunks(file)
                return
        elif len(parts) == 4 and parts[0] == "director" and parts[2] == "metadata":
            try:
                data = self.director.metadata(parts[1], parts[3])
            except UnknownVehicle:
                data = None
        if data is None:
            raise DownloadHTTPError(f"GET {path}: HTTP 404", 404)
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    def check_in(self, vin: str, manifest: bytes, max_length: int) -> tuple[bytes, int]:
        body = self.director.check_in(vin, manifest)
        if len(body) > max_length:
            raise DownloadLengthMismatchError("check-in response too long")
        return body, self.director.root_version


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class TransportFetcher(FetcherInterface):
    """python-tuf fetcher over a :class:`Transport`.

    ``prefilled`` answers URLs already received (the director timestamp that comes back
    with a check-in); with ``latest_root`` set, roots above that version answer 404
    without a round trip (the check-in response said there is none).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        prefilled: dict[str, bytes] | None = None,
        latest_root: int | None = None,
    ) -> None:
        self.transport = transport
        self.prefilled = prefilled or {}
        self.latest_root = latest_root
        self.received = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(SCHEME):
            raise DownloadError(f"unexpected URL {url}")
        path = url[len(SCHEME) :]
        if path in self.prefilled:
            data = self.prefilled[path]
            self.received += len(data)
            yield data
            return
        if self.latest_root is not None and path.endswith(".root.json"):
            head = path.rsplit("/", 1)[-1].split(".", 1)[0]
            if head.isdigit() and int(head) > self.latest_root:
                raise DownloadHTTPError(f"GET {path}: no newer root", 404)
        for chunk in self.transport.get(path):
            self.received += len(chunk)
            yield chunk

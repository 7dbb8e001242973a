"""One folder holding both repositories, their keys and the assignment table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetops.ota.director import AssignmentSource, Director, StaticAssignments
from fleetops.ota.keys import KeyStore
from fleetops.ota.repository import ImageRepository, Thresholds


@dataclass
class OtaServer:
    """Image repository + director over ``<repo>``; keys in ``<repo>/keys`` by default."""

    image: ImageRepository
    director: Director

    @classmethod
    def open(
        cls,
        repo: Path,
        *,
        keys: Path | None = None,
        root_keys: Path | None = None,
        source: AssignmentSource | None = None,
    ) -> OtaServer:
        store = KeyStore(keys or Path(repo) / "keys", root_keys)
        image = ImageRepository(Path(repo), store)
        return cls(image, Director(Path(repo), store, image, source))

    @classmethod
    def init(
        cls,
        repo: Path,
        *,
        root_keys: Path,
        keys: Path | None = None,
        thresholds: Thresholds | None = None,
    ) -> OtaServer:
        store = KeyStore(keys or Path(repo) / "keys", root_keys)
        ImageRepository.create(Path(repo), store, thresholds)
        Director.create(Path(repo), store, thresholds)
        return cls.open(repo, keys=keys, root_keys=root_keys)

    @property
    def assignments(self) -> StaticAssignments:
        source = self.director.source
        if not isinstance(source, StaticAssignments):
            raise TypeError("this server's assignments come from a campaign, not a table")
        return source

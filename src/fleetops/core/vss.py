"""The COVESA VSS signal catalog: which signals fleetops knows, with unit and datatype."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fleetops.core.errors import ConfigError, ValidationError


class DataType(StrEnum):
    """VSS datatypes the lake can hold (it stores every value as float64)."""

    BOOLEAN = "boolean"
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    FLOAT = "float"
    DOUBLE = "double"

    @property
    def is_integer(self) -> bool:
        return self.value.startswith(("uint", "int"))


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One VSS leaf: its dotted path, datatype, unit and allowed range."""

    path: str
    datatype: DataType
    type: str = "sensor"
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.path.startswith("Vehicle.") or ".." in self.path:
            raise ValidationError(f"signal path {self.path!r} is not a VSS path (Vehicle.…)")


class SignalCatalog(Mapping[str, SignalSpec]):
    """Signals by VSS path; extend with overlays in the same YAML shape as the shipped file."""

    def __init__(self, specs: list[SignalSpec], vss_version: str = "") -> None:
        self._specs: dict[str, SignalSpec] = {}
        for spec in specs:
            self._specs[spec.path] = spec
        self.vss_version = vss_version

    def __getitem__(self, path: str) -> SignalSpec:
        try:
            return self._specs[path]
        except KeyError:
            raise KeyError(f"{path!r} is not in the signal catalog") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<yaml>") -> SignalCatalog:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("signals"), list):
            raise ConfigError(f"{source}: expected a mapping with a 'signals' list")
        specs = [_spec_from_entry(entry, source) for entry in doc["signals"]]
        return cls(specs, str(doc.get("vss_version", "")))

    @classmethod
    def from_file(cls, path: Path) -> SignalCatalog:
        return cls.from_yaml(path.read_text(encoding="utf-8"), str(path))

    def with_overlay(self, overlay: SignalCatalog) -> SignalCatalog:
        """A new catalog with ``overlay``'s signals added or replacing ours."""
        return SignalCatalog([*self._specs.values(), *overlay.values()], self.vss_version)


def _spec_from_entry(entry: Any, source: str) -> SignalSpec:
    if not isinstance(entry, dict) or "path" not in entry or "datatype" not in entry:
        raise ConfigError(f"{source}: each signal needs at least 'path' and 'datatype': {entry!r}")
    try:
        datatype = DataType(entry["datatype"])
    except ValueError:
        allowed = ", ".join(d.value for d in DataType)
        raise ConfigError(
            f"{source}: signal {entry['path']}: datatype {entry['datatype']!r} "
            f"is not one of {allowed}"
        ) from None
    return SignalSpec(
        path=str(entry["path"]),
        datatype=datatype,
        type=str(entry.get("type", "sensor")),
        unit=entry.get("unit"),
        min=None if entry.get("min") is None else float(entry["min"]),
        max=None if entry.get("max") is None else float(entry["max"]),
        description=str(entry.get("description", "")),
    )


@cache
def default_catalog() -> SignalCatalog:
    """The VSS subset fleetops ships (``fleetops/core/data/vss_subset.yaml``)."""
    text = resources.files("fleetops.core").joinpath("data/vss_subset.yaml").read_text("utf-8")
    return SignalCatalog.from_yaml(text, "vss_subset.yaml")

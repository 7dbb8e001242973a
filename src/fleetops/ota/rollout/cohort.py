"""Which ECUs a campaign targets: a cohort chosen from the vehicles and ECUs tables.

The tables follow the lake's ``VEHICLES`` and ``ECUS`` schemas (``fleetops.core.schema``),
whether read from the lake or taken from a :class:`~fleetops.sim.FleetSimulation`. A cohort
has one member per targeted ECU (a VIN and the ECU of the release's hardware ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from fleetops.core.errors import ValidationError

COHORT_FIELDS: tuple[str, ...] = (
    "model",
    "model_year",
    "region",
    "ecu",
    "hardware_id",
    "software_version",
)
"""What a cohort may be selected by (each field: the allowed values; absent: any)."""

MEMBER_COLUMNS = ("vin", "ecu", "hardware_id", "software_version", "model", "model_year", "region")


@dataclass(frozen=True, slots=True)
class CohortSpec:
    """Selection criteria: a field maps to the values it may take."""

    criteria: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def of(cls, **criteria: Any) -> CohortSpec:
        """``CohortSpec.of(model="Aurora", model_year=[2023, 2024], ecu="BMS")``."""
        items: list[tuple[str, tuple[str, ...]]] = []
        for name, value in criteria.items():
            if value is None:
                continue
            if name not in COHORT_FIELDS:
                raise ValidationError(
                    f"unknown cohort field {name!r} (known: {', '.join(COHORT_FIELDS)})"
                )
            values = (value,) if isinstance(value, str | int) else tuple(value)
            if not values:
                raise ValidationError(f"cohort field {name!r} lists no value")
            items.append((name, tuple(str(v) for v in values)))
        return cls(tuple(sorted(items)))

    @classmethod
    def parse(cls, expressions: list[str]) -> CohortSpec:
        """From ``field=value[,value...]`` strings (the CLI's ``--where``)."""
        criteria: dict[str, list[str]] = {}
        for text in expressions:
            name, sep, values = text.partition("=")
            if not sep or not values.strip():
                raise ValidationError(f"cohort criterion {text!r} is not field=value[,value]")
            criteria.setdefault(name.strip(), []).extend(
                v.strip() for v in values.split(",") if v.strip()
            )
        return cls.of(**criteria)

    def as_dict(self) -> dict[str, list[str]]:
        return {name: list(values) for name, values in self.criteria}

    @classmethod
    def from_dict(cls, data: dict[str, list[str]]) -> CohortSpec:
        return cls.of(**data)

    def describe(self) -> str:
        return " and ".join(f"{n} in {{{', '.join(v)}}}" for n, v in self.criteria) or "all"


def _frame(table: pa.Table | pl.DataFrame, name: str, needed: tuple[str, ...]) -> pl.DataFrame:
    frame = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValidationError(f"the {name} table lacks columns {missing}")
    return frame


def select_cohort(
    vehicles: pa.Table | pl.DataFrame,
    ecus: pa.Table | pl.DataFrame,
    spec: CohortSpec,
    hardware_ids: list[str] | None = None,
) -> pl.DataFrame:
    """The targeted ECUs (columns :data:`MEMBER_COLUMNS`), sorted by VIN and ECU.

    ``hardware_ids``: those the release has an image for; an ECU of another hardware id is
    never a member whatever the criteria say. An empty cohort is an error.
    """
    v = _frame(vehicles, "vehicles", ("vin", "model", "model_year", "region"))
    e = _frame(ecus, "ecus", ("vin", "ecu", "hardware_id", "software_version"))
    joined = e.join(v.select("vin", "model", "model_year", "region"), on="vin", how="inner")
    joined = joined.with_columns(pl.col("model_year").cast(pl.Int64))
    for name, values in spec.criteria:
        col = pl.col(name).cast(pl.String)
        joined = joined.filter(col.is_in(list(values)))
    if hardware_ids is not None:
        joined = joined.filter(pl.col("hardware_id").is_in(hardware_ids))
    if joined.is_empty():
        raise ValidationError(
            f"the cohort is empty: no ECU matches {spec.describe()}"
            + (f" with hardware id in {sorted(hardware_ids)}" if hardware_ids is not None else "")
        )
    dup = joined.group_by("vin", "hardware_id").len().filter(pl.col("len") > 1)
    if not dup.is_empty():
        raise ValidationError(
            f"{dup.height} vehicles have several ECUs of one hardware id; narrow the cohort by ecu"
        )
    return joined.select(MEMBER_COLUMNS).sort("vin", "ecu")

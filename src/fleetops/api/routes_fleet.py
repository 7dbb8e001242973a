"""Fleet, vehicles, signals, time series and DTCs (read-only, from the lake)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from fleetops.api.errors import COMMON_RESPONSES, NOT_FOUND, ApiError
from fleetops.api.fleet import HEALTH_STATES, FleetData
from fleetops.api.models import (
    DtcOut,
    FleetSummary,
    Page,
    Series,
    SeriesPoint,
    SignalLatest,
    VehicleDetail,
    VehicleOut,
)

router = APIRouter(prefix="/api/v1", responses=COMMON_RESPONSES, tags=["fleet"])

Vin = Annotated[str, Path(min_length=17, max_length=17, pattern=r"^[0-9A-HJ-NPR-Za-hj-npr-z]{17}$")]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000)]
HealthState = Literal["ok", "watch", "fault", "offline"]
SortKey = Literal[
    "vin", "model", "model_year", "region", "health", "last_seen", "soc", "lv_voltage",
    "odometer_km", "dtcs", "dtcs_24h", "dtcs_7d", "last_dtc",
]  # fmt: skip
assert set(HEALTH_STATES) == {"ok", "watch", "fault", "offline"}


def fleet(request: Request) -> FleetData:
    data: FleetData = request.app.state.fleet
    return data


def _vehicle_or_404(request: Request, vin: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    found = fleet(request).vehicle(vin)
    if found is None:
        raise ApiError(404, "not_found", f"vehicle {vin.upper()} not found")
    return found


@router.get("/fleet/summary", response_model=FleetSummary)
def fleet_summary(request: Request) -> FleetSummary:
    """Health and risk at a glance: counts by health, region, model, software and DTC,
    and vehicle positions binned on a 0.1° grid (bounded size for any fleet)."""
    return FleetSummary.model_validate(fleet(request).summary())


@router.get("/vehicles", response_model=Page[VehicleOut])
def list_vehicles(
    request: Request,
    region: Annotated[str | None, Query(max_length=100)] = None,
    model: Annotated[str | None, Query(max_length=100)] = None,
    health: HealthState | None = None,
    vin_prefix: Annotated[str | None, Query(max_length=17)] = None,
    ecu: Annotated[str | None, Query(max_length=50, description="with software_version")] = None,
    software_version: Annotated[str | None, Query(max_length=50)] = None,
    sort: SortKey = "vin",
    descending: bool = False,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[VehicleOut]:
    """Vehicles with their latest key signals and health; filter, sort, paginate."""
    if (ecu is None) != (software_version is None):
        raise ApiError(400, "bad_request", "give ecu and software_version together")
    software = (ecu, software_version) if ecu is not None and software_version is not None else None
    total, frame = fleet(request).vehicles(
        region=region,
        model=model,
        health=health,
        vin_prefix=vin_prefix,
        software=software,
        sort=sort,
        descending=descending,
        offset=offset,
        limit=limit,
    )
    items = [VehicleOut.model_validate(r) for r in frame.to_dicts()]
    return Page[VehicleOut](items=items, total=total, offset=offset, limit=limit)


@router.get("/vehicles/{vin}", response_model=VehicleDetail, responses=NOT_FOUND)
def vehicle_detail(vin: Vin, request: Request) -> VehicleDetail:
    """One vehicle: inventory, ECUs with software versions, latest key signals, health."""
    row, ecus = _vehicle_or_404(request, vin)
    return VehicleDetail.model_validate({**row, "ecus": ecus})


@router.get("/vehicles/{vin}/signals", response_model=list[SignalLatest], responses=NOT_FOUND)
def vehicle_signals(vin: Vin, request: Request) -> list[SignalLatest]:
    """Every signal the vehicle sent lately, with its latest value."""
    _vehicle_or_404(request, vin)
    return [SignalLatest.model_validate(r) for r in fleet(request).signals(vin)]


@router.get("/vehicles/{vin}/series", response_model=Series, responses=NOT_FOUND)
def vehicle_series(
    vin: Vin,
    request: Request,
    signal: Annotated[str, Query(min_length=1, max_length=200, examples=["Vehicle.Speed"])],
    start: datetime | None = None,
    end: datetime | None = None,
    points: Annotated[int, Query(ge=2, le=2000)] = 300,
) -> Series:
    """A signal as a time series, downsampled on the server into at most ``points`` buckets
    (min, mean, max and sample count each). Default window: the last two days of data."""
    _vehicle_or_404(request, vin)
    for moment in (start, end):
        if moment is not None and moment.tzinfo is None:
            raise ApiError(400, "bad_request", "start and end need a timezone (e.g. …Z)")
    bucket, rows = fleet(request).series(vin, signal, start=start, end=end, points=points)
    return Series(
        vin=vin.upper(),
        signal=signal,
        bucket_seconds=bucket,
        points=[SeriesPoint.model_validate(r) for r in rows],
    )


@router.get("/dtcs", response_model=Page[DtcOut])
def list_dtcs(
    request: Request,
    vin: Annotated[str | None, Query(min_length=17, max_length=17)] = None,
    code: Annotated[str | None, Query(min_length=1, max_length=10)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[DtcOut]:
    """Diagnostic trouble codes, newest first."""
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise ApiError(400, "bad_request", "since and until need a timezone (e.g. …Z)")
    total, rows = fleet(request).dtcs(
        vin=vin, code=code, since=since, until=until, offset=offset, limit=limit
    )
    items = [DtcOut.model_validate(r) for r in rows]
    return Page[DtcOut](items=items, total=total, offset=offset, limit=limit)

"""Predictive maintenance: failure-risk predictions and work orders (from the lake tables
the maintenance pipeline writes; read-only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from fleetops.api.errors import COMMON_RESPONSES
from fleetops.api.fleet import FleetData, MaintenanceData
from fleetops.api.models import Page, Prediction, WorkOrder

router = APIRouter(prefix="/api/v1/maintenance", responses=COMMON_RESPONSES, tags=["maintenance"])
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000)]
VinFilter = Annotated[str | None, Query(min_length=17, max_length=17)]


def maintenance(request: Request) -> MaintenanceData:
    fleet: FleetData = request.app.state.fleet
    return MaintenanceData(fleet)


@router.get("/predictions", response_model=Page[Prediction])
def list_predictions(
    request: Request,
    vin: VinFilter = None,
    component: Annotated[str | None, Query(max_length=50)] = None,
    alerts_only: bool = False,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[Prediction]:
    """Latest risk per vehicle, component and horizon, riskiest first."""
    total, rows = maintenance(request).predictions(
        vin=vin, component=component, alerts_only=alerts_only, offset=offset, limit=limit
    )
    items = [Prediction.model_validate(r) for r in rows]
    return Page[Prediction](items=items, total=total, offset=offset, limit=limit)


@router.get("/work-orders", response_model=Page[WorkOrder])
def list_work_orders(
    request: Request, vin: VinFilter = None, offset: Offset = 0, limit: Limit = 50
) -> Page[WorkOrder]:
    """Ranked work orders with the evidence behind each."""
    total, rows = maintenance(request).work_orders(vin=vin, offset=offset, limit=limit)
    items = [WorkOrder.model_validate(r) for r in rows]
    return Page[WorkOrder](items=items, total=total, offset=offset, limit=limit)

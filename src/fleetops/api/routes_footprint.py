"""Footprint plans (read-only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from fleetops.api.errors import COMMON_RESPONSES, NOT_FOUND, UNAVAILABLE, ApiError
from fleetops.api.footprint import FootprintPlans
from fleetops.api.models import PlanDetail, PlanSummary

router = APIRouter(
    prefix="/api/v1/footprint", responses=COMMON_RESPONSES | UNAVAILABLE, tags=["footprint"]
)


def plans(request: Request) -> FootprintPlans:
    store: FootprintPlans = request.app.state.footprint
    return store


@router.get("/plans", response_model=list[PlanSummary])
def list_plans(request: Request) -> list[PlanSummary]:
    """Consolidation plans found under the plans folder."""
    store = plans(request)
    found = [store.summary(name) for name in store.names()]
    return [PlanSummary.model_validate(p) for p in found if p is not None]


@router.get("/plans/{plan}", response_model=PlanDetail, responses=NOT_FOUND)
def plan_detail(
    plan: Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")], request: Request
) -> PlanDetail:
    """One plan: its figures against the lower bound and FFD, and the fill of every host."""
    found = plans(request).detail(plan)
    if found is None:
        raise ApiError(404, "not_found", f"footprint plan {plan!r} not found")
    return PlanDetail.model_validate(found)

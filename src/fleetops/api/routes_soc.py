"""Security incidents and the analyst workflow: queue, detail with timeline, status,
assignment and comments (every change audited here and in the incident's own history)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from fleetops.api.auth import CurrentUser, client_ip
from fleetops.api.errors import COMMON_RESPONSES, NOT_FOUND, ApiError
from fleetops.api.models import (
    Assignment,
    CommentCreate,
    IncidentDetail,
    IncidentSummary,
    StatusChange,
)
from fleetops.api.soc import IncidentProvider
from fleetops.api.store import Store

router = APIRouter(prefix="/api/v1/incidents", responses=COMMON_RESPONSES, tags=["security"])
IncidentId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
Status = Literal["new", "acknowledged", "in_progress", "resolved", "false_positive"]


def provider(request: Request) -> IncidentProvider:
    incidents: IncidentProvider = request.app.state.providers.incidents
    return incidents


@router.get("", response_model=list[IncidentSummary])
def list_incidents(
    request: Request,
    status: Status | None = None,
    assignee: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[IncidentSummary]:
    """The incident queue, highest priority first."""
    rows = provider(request).list(status=status, assignee=assignee, limit=limit)
    return [IncidentSummary.model_validate(r) for r in rows]


@router.get("/{incident_id}", response_model=IncidentDetail, responses=NOT_FOUND)
def incident_detail(incident_id: IncidentId, request: Request) -> IncidentDetail:
    """One incident: its alerts (the timeline), comments and workflow history."""
    found = provider(request).get(incident_id)
    if found is None:
        raise ApiError(404, "not_found", f"incident {incident_id!r} not found")
    return IncidentDetail.model_validate(found)


def change_incident(
    request: Request, incident_id: str, action: str, value: str, actor: str
) -> IncidentDetail:
    """One workflow step, audited (API and dashboard)."""
    changed = provider(request).change(incident_id, action, value, actor)
    if changed is None:
        raise ApiError(404, "not_found", f"incident {incident_id!r} not found")
    before, after = changed
    store: Store = request.app.state.store
    store.audit(
        actor,
        f"incident.{action}",
        f"incident:{incident_id}",
        before=before,
        after=after,
        ip=client_ip(request),
    )
    return incident_detail(incident_id, request)


@router.post("/{incident_id}/status", response_model=IncidentDetail, responses=NOT_FOUND)
def set_incident_status(
    incident_id: IncidentId, body: StatusChange, me: CurrentUser, request: Request
) -> IncidentDetail:
    """Move the incident through the workflow (acknowledged, in_progress, resolved, …)."""
    return change_incident(request, incident_id, "status", body.status, me.name)


@router.post("/{incident_id}/assign", response_model=IncidentDetail, responses=NOT_FOUND)
def assign_incident(
    incident_id: IncidentId, body: Assignment, me: CurrentUser, request: Request
) -> IncidentDetail:
    """Give the incident to an analyst."""
    return change_incident(request, incident_id, "assign", body.assignee, me.name)


@router.post("/{incident_id}/comments", response_model=IncidentDetail, responses=NOT_FOUND)
def comment_incident(
    incident_id: IncidentId, body: CommentCreate, me: CurrentUser, request: Request
) -> IncidentDetail:
    """Add a note to the incident."""
    return change_incident(request, incident_id, "comment", body.body, me.name)

"""OTA campaigns: list, detail (waves, transitions, halt evidence), pause and resume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from fleetops.api.auth import CurrentUser, client_ip
from fleetops.api.errors import COMMON_RESPONSES, CONFLICT, NOT_FOUND, ApiError
from fleetops.api.models import CampaignDetail, CampaignSummary, TransitionRequest
from fleetops.api.ota import CampaignProvider
from fleetops.api.store import Store
from fleetops.ota.rollout.campaign import TransitionError

router = APIRouter(prefix="/api/v1/campaigns", responses=COMMON_RESPONSES, tags=["ota"])
CampaignId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


def provider(request: Request) -> CampaignProvider:
    campaigns: CampaignProvider = request.app.state.providers.campaigns
    return campaigns


@router.get("", response_model=list[CampaignSummary])
def list_campaigns(request: Request) -> list[CampaignSummary]:
    """Every campaign with its state and install progress."""
    return [CampaignSummary.model_validate(c) for c in provider(request).list()]


@router.get("/{campaign_id}", response_model=CampaignDetail, responses=NOT_FOUND)
def campaign_detail(campaign_id: CampaignId, request: Request) -> CampaignDetail:
    """A campaign's waves, transitions, and the evidence of its last halt."""
    found = provider(request).get(campaign_id)
    if found is None:
        raise ApiError(404, "not_found", f"campaign {campaign_id!r} not found")
    return CampaignDetail.model_validate(found)


def change_campaign(
    request: Request, campaign_id: str, action: str, reason: str, actor: str
) -> CampaignDetail:
    """Pause or resume through the campaign's state machine, audited (API and dashboard)."""
    campaigns = provider(request)
    try:
        changed = campaigns.transition(campaign_id, action, actor, reason)
    except TransitionError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    if changed is None:
        raise ApiError(404, "not_found", f"campaign {campaign_id!r} not found")
    before, after = changed
    store: Store = request.app.state.store
    store.audit(
        actor,
        f"campaign.{action}",
        f"campaign:{campaign_id}",
        before=before,
        after=after | {"reason": reason},
        ip=client_ip(request),
    )
    found = campaigns.get(campaign_id)
    assert found is not None
    return CampaignDetail.model_validate(found)


@router.post("/{campaign_id}/pause", response_model=CampaignDetail, responses=NOT_FOUND | CONFLICT)
def pause_campaign(
    campaign_id: CampaignId, body: TransitionRequest, me: CurrentUser, request: Request
) -> CampaignDetail:
    """Stop releasing installs (running → paused); the reason goes into the campaign log."""
    return change_campaign(request, campaign_id, "pause", body.reason, me.name)


@router.post("/{campaign_id}/resume", response_model=CampaignDetail, responses=NOT_FOUND | CONFLICT)
def resume_campaign(
    campaign_id: CampaignId, body: TransitionRequest, me: CurrentUser, request: Request
) -> CampaignDetail:
    """Resume a paused or halted campaign (a halted one needs a release manager's override)."""
    return change_campaign(request, campaign_id, "resume", body.reason, me.name)

"""Request and response bodies of the API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from fleetops.api.permissions import Role

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items`` from ``offset``, ``total`` matching the filters."""

    items: list[T]
    total: int
    offset: int
    limit: int


class Health(BaseModel):
    status: str
    version: str


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: int
    username: str
    role: Role
    disabled: bool
    created_at: str


class SessionOut(BaseModel):
    user: UserOut
    csrf_token: str  # send back as X-CSRF-Token on every unsafe request with the cookie


class MeOut(BaseModel):
    user: UserOut
    via: str
    permissions: list[str]


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: str
    expires_at: float | None
    revoked: bool


class TokenCreated(TokenOut):
    token: str  # shown once; only its SHA-256 is stored


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role
    password: str | None = Field(default=None, min_length=12, max_length=1024)


class UserCreated(UserOut):
    password: str | None = None  # the generated one-time password, when none was given


class UserUpdate(BaseModel):
    role: Role | None = None
    disabled: bool | None = None


class AuditOut(BaseModel):
    id: int
    ts: str
    actor: str
    action: str
    target: str
    before: Any = None
    after: Any = None
    ip: str
    hash: str


class VehicleOut(BaseModel):
    vin: str
    model: str | None
    model_year: int | None
    region: str | None
    health: str
    last_seen: datetime | None
    soc: float | None = Field(description="traction battery state of charge, %")
    lv_voltage: float | None = Field(description="12 V battery voltage, V")
    odometer_km: float | None
    lat: float | None
    lon: float | None
    dtcs: int
    dtcs_24h: int
    dtcs_7d: int
    last_dtc: datetime | None


class EcuOut(BaseModel):
    ecu: str
    hardware_id: str | None
    software_version: str | None


class VehicleDetail(VehicleOut):
    ecus: list[EcuOut]


class SignalLatest(BaseModel):
    signal: str
    value: float
    ts: datetime
    samples: int


class SeriesPoint(BaseModel):
    t: datetime
    min: float
    mean: float
    max: float
    n: int


class Series(BaseModel):
    vin: str
    signal: str
    bucket_seconds: float
    points: list[SeriesPoint]


class DtcOut(BaseModel):
    vin: str
    ts: datetime
    ecu: str | None
    code: str
    description: str | None


class RegionSummary(BaseModel):
    region: str | None
    vehicles: int
    ok: int
    watch: int
    fault: int
    offline: int
    dtcs_7d: int
    lat: float | None
    lon: float | None
    mean_soc: float | None


class ModelCount(BaseModel):
    model: str | None
    model_year: int | None
    vehicles: int


class SoftwareCount(BaseModel):
    ecu: str
    software_version: str | None
    vehicles: int


class PositionBin(BaseModel):
    lat: float
    lon: float
    health: str
    vehicles: int


class DtcCount(BaseModel):
    code: str
    description: str | None
    count: int
    vehicles: int


class FleetSummary(BaseModel):
    vehicles: int
    as_of: datetime | None
    data_since: datetime | None
    health: dict[str, int]
    regions: list[RegionSummary]
    models: list[ModelCount]
    software: list[SoftwareCount]
    positions: list[PositionBin]
    top_dtcs: list[DtcCount]
    snapshot_seconds: float


class PlanSummary(BaseModel):
    name: str
    hosts_used: int
    lower_bound: int
    ffd_hosts: int
    gap: float
    optimal: bool
    headroom: float
    demand_definition: str
    baseline_hosts: int | None = None
    reduction: float | None = None


class HostFill(BaseModel):
    host: str
    cpu_capacity: float
    memory_capacity: float
    cpu_used: float
    memory_used: float
    workloads: int


class PlanDetail(PlanSummary):
    summary: dict[str, Any]
    notes: list[str]
    hosts: list[HostFill]


class CampaignSummary(BaseModel):
    campaign_id: str
    name: str
    state: str
    release: str
    software_version: str
    cohort: str
    ecus: int
    installed: int
    failed: int
    waves: int
    current_wave: int
    created: float
    halted: bool


class WaveProgress(BaseModel):
    wave: int
    share: float
    ecus: int
    installed: int
    failed: int
    released: str | None
    success_threshold: float
    error_threshold: float


class Transition(BaseModel):
    time: str | None
    from_state: str | None
    to_state: str | None
    actor: str | None
    reason: str | None
    has_evidence: bool


class CampaignDetail(CampaignSummary):
    wave_progress: list[WaveProgress]
    transitions: list[Transition]
    halt_evidence: dict[str, Any] | None
    last_report: dict[str, Any] | None


class TransitionRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class IncidentSummary(BaseModel):
    incident_id: str
    title: str
    severity_id: int
    priority: float
    status: str
    assignee: str | None
    first_seen: str
    last_seen: str
    updated_at: str


class IncidentAlert(BaseModel):
    finding_uid: str
    time: str
    source: str | None
    rule_id: str | None
    title: str | None
    severity_id: int | None
    duplicates: int


class IncidentComment(BaseModel):
    author: str
    body: str
    created_at: str


class IncidentHistory(BaseModel):
    at: str
    actor: str
    action: str
    old_value: str | None
    new_value: str | None


class IncidentDetail(IncidentSummary):
    created_at: str
    summary: Any
    alerts: list[IncidentAlert]
    comments: list[IncidentComment]
    history: list[IncidentHistory]


class StatusChange(BaseModel):
    status: Literal["new", "acknowledged", "in_progress", "resolved", "false_positive"]


class Assignment(BaseModel):
    assignee: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


class CommentCreate(BaseModel):
    body: str = Field(min_length=1, max_length=5000, pattern=r"\S")


class Prediction(BaseModel):
    vin: str
    component: str
    horizon_h: float
    p_fail: float = Field(description="calibrated probability of failure within the horizon")
    alert: bool
    ts: datetime


class WorkOrder(BaseModel):
    rank: int
    vin: str
    component: str
    due_by: datetime
    confidence: float
    evidence: str  # the explanation, in words
    created: datetime

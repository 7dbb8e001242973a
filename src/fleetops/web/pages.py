"""Dashboard pages. Every page goes through the same gate as the API (the app-wide
:func:`~fleetops.api.auth.authorize` and the route table); forms carry the session's CSRF
token; changes go through the same functions as the API, so they are audited the same way.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from fleetops.api.auth import (
    SESSION_COOKIE,
    CurrentUser,
    Principal,
    check_credentials,
    client_ip,
)
from fleetops.api.errors import ApiError
from fleetops.api.fleet import HEALTH_STATES, LV_VOLTAGE, SOC, FleetData, MaintenanceData
from fleetops.api.footprint import FootprintPlans
from fleetops.api.permissions import Perm
from fleetops.api.routes_access import start_session
from fleetops.api.store import Store
from fleetops.web import charts

router = APIRouter(include_in_schema=False)
LOGIN_COOKIE = "fleetops_login"
PAGE_SIZE = 50
VEHICLE_PLOTS = (
    (SOC, "traction battery state of charge", " %"),
    (LV_VOLTAGE, "12 V battery voltage", " V"),
    ("Vehicle.Speed", "speed", " km/h"),
    ("Vehicle.Powertrain.ElectricMotor.CoolantTemperature", "motor coolant temperature", " °C"),
)

env = Environment(
    loader=PackageLoader("fleetops.web", "templates"),
    autoescape=select_autoescape(["j2", "html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals["health_colours"] = charts.HEALTH_COLOURS
env.filters["when"] = lambda t: "" if t is None else f"{t:%Y-%m-%d %H:%M}"
env.filters["num"] = lambda v, d=1: "–" if v is None else f"{v:,.{d}f}"


def render(request: Request, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    principal: Principal | None = getattr(request.state, "principal", None)
    page = env.get_template(template).render(
        request=request,
        me=principal,
        csrf=principal.csrf if principal else "",
        may=(lambda perm: principal is not None and principal.may(Perm(perm))),
        capabilities=request.app.state.providers,
        **context,
    )
    return HTMLResponse(page, status_code=http_status)


def page_error(request: Request, status: int, message: str) -> Response:
    """Errors on dashboard pages: sign-in redirect for 401, an HTML page otherwise."""
    if status == 401 and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    return render(request, "error.html.j2", http_status=status, status_code=status, message=message)


def _fleet(request: Request) -> FleetData:
    data: FleetData = request.app.state.fleet
    return data


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


# -- sign in and out --------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html.j2", login_token=token, next=_safe_next(next))
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", max_age=1800)
    return response


@router.post("/login")
def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    login_token: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, login_token):  # login CSRF, double submit
        raise ApiError(403, "csrf", "the sign-in form expired; reload the page")
    store = _store(request)
    user = check_credentials(store, username, password)
    if user is None:
        store.audit(username, "login.failed", f"user:{username}", ip=client_ip(request))
        fresh = secrets.token_urlsafe(24)
        response: Response = render(
            request,
            "login.html.j2",
            http_status=401,
            login_token=fresh,
            next=_safe_next(next),
            failed=True,
        )
        response.set_cookie(LOGIN_COOKIE, fresh, httponly=True, samesite="strict", max_age=1800)
        return response
    response = RedirectResponse(_safe_next(next), status_code=303)
    start_session(request, response, user)
    response.delete_cookie(LOGIN_COOKIE)
    store.audit(user.username, "login", f"user:{user.username}", ip=client_ip(request))
    return response


@router.post("/logout")
def logout_submit(request: Request, me: CurrentUser) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        _store(request).delete_session(session_id)
    _store(request).audit(
        me.name, "logout", f"user:{me.name}", after={"via": me.via}, ip=client_ip(request)
    )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- fleet ----------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    summary = _fleet(request).summary()
    health_chart = charts.stacked(
        {s: summary["health"].get(s, 0) for s in HEALTH_STATES}, label="vehicles by health"
    )
    fleet_map = charts.region_map(
        summary["positions"], summary["regions"], label="vehicles by region and health"
    )
    region_rows = [(str(r["region"]), float(r["vehicles"])) for r in summary["regions"]]
    fault_share = [
        (str(r["region"]), 100.0 * (r["fault"] + r["watch"]) / max(r["vehicles"], 1))
        for r in summary["regions"]
    ]
    dtc_chart = charts.hbar(
        [(f"{d['code']} {d['description'] or ''}", float(d["count"])) for d in summary["top_dtcs"]],
        label="most frequent DTCs",
        colour="#ef6c00",
    )
    versions: dict[str, list[tuple[str, float]]] = {}
    for row in summary["software"]:
        versions.setdefault(row["ecu"], []).append(
            (str(row["software_version"]), float(row["vehicles"]))
        )
    software_charts = {
        ecu: charts.hbar(rows[:6], label=f"{ecu} software versions", colour="#6a1b9a")
        for ecu, rows in versions.items()
    }
    at_risk = MaintenanceData(_fleet(request)).at_risk()
    return render(
        request,
        "overview.html.j2",
        predicted_chart=charts.hbar(
            sorted(((c, float(n)) for c, n in at_risk.items()), key=lambda kv: (-kv[1], kv[0])),
            label="vehicles with a predicted failure, by component",
            colour="#6a1b9a",
        )
        if at_risk
        else None,
        summary=summary,
        health_chart=health_chart,
        fleet_map=fleet_map,
        region_chart=charts.hbar(region_rows, label="vehicles per region"),
        risk_chart=charts.hbar(
            fault_share, label="share of vehicles in fault or watch", colour="#c62828", unit=" %"
        ),
        dtc_chart=dtc_chart,
        software_charts=software_charts,
    )


@router.get("/vehicles", response_class=HTMLResponse)
def vehicles_page(
    request: Request,
    region: Annotated[str | None, Query(max_length=100)] = None,
    health: Annotated[str | None, Query(max_length=20)] = None,
    vin_prefix: Annotated[str | None, Query(max_length=17)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    region = region or None
    health = health if health in HEALTH_STATES else None
    total, frame = _fleet(request).vehicles(
        region=region,
        health=health,
        vin_prefix=vin_prefix or None,
        sort="dtcs_7d" if health is None else "vin",
        descending=health is None,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    regions = sorted(
        str(r["region"]) for r in _fleet(request).summary()["regions"] if r["region"] is not None
    )
    query = {
        k: v for k, v in {"region": region, "health": health, "vin_prefix": vin_prefix}.items() if v
    }
    return render(
        request,
        "vehicles.html.j2",
        vehicles=frame.to_dicts(),
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        regions=regions,
        region=region,
        health=health,
        vin_prefix=vin_prefix or "",
        query=urlencode(query),
    )


@router.get("/vehicles/{vin}", response_class=HTMLResponse)
def vehicle_page(
    vin: str, request: Request, signal: Annotated[str | None, Query(max_length=200)] = None
) -> HTMLResponse:
    data = _fleet(request)
    found = data.vehicle(vin)
    if found is None:
        raise ApiError(404, "not_found", f"vehicle {vin.upper()} not found")
    row, ecus = found
    vin = row["vin"]
    latest = data.signals(vin)
    known = {s["signal"] for s in latest}
    wanted = [p for p in VEHICLE_PLOTS if p[0] in known]
    if signal and signal in known and signal not in {p[0] for p in wanted}:
        wanted.append((signal, signal, ""))
    _, series = data.series_many(vin, [p[0] for p in wanted], points=240)
    plots = []
    for path, title, unit in wanted:
        pts = [(p["t"], p["mean"], p["min"], p["max"]) for p in series.get(path, [])]
        plots.append((title, charts.line([(title, pts)], label=title, unit=unit)))
    _, dtcs = data.dtcs(vin=vin, limit=100)
    care = MaintenanceData(data)
    _, predictions = care.predictions(vin=vin, limit=50)
    _, orders = care.work_orders(vin=vin, limit=20)
    why = {o["component"]: o["evidence"] for o in orders}
    for p in predictions:
        p["horizon"] = f"{p['horizon_h']:g} h"
        p["risk"] = p["p_fail"]
        p["explanation"] = why.get(p["component"], "")
    return render(
        request,
        "vehicle.html.j2",
        predictions=predictions,
        prediction_chart=charts.hbar(
            [(f"{p['component']} ≤ {p['horizon']}", 100 * p["p_fail"]) for p in predictions[:12]],
            label="predicted failure risk",
            colour="#c62828",
            unit=" %",
        ),
        v=row,
        ecus=ecus,
        plots=plots,
        latest=latest,
        dtcs=dtcs,
        signal=signal,
    )


# -- footprint --------------------------------------------------------------------------------


def _plans(request: Request) -> FootprintPlans:
    plans: FootprintPlans = request.app.state.footprint
    return plans


@router.get("/footprint", response_class=HTMLResponse)
def footprint_page(request: Request) -> HTMLResponse:
    store = _plans(request)
    plans = [p for p in (store.summary(n) for n in store.names()) if p is not None]
    return render(request, "footprint.html.j2", plans=plans, plan=None, root=str(store.root))


@router.get("/footprint/{plan}", response_class=HTMLResponse)
def footprint_plan_page(plan: str, request: Request) -> HTMLResponse:
    found = _plans(request).detail(plan)
    if found is None:
        raise ApiError(404, "not_found", f"footprint plan {plan!r} not found")
    bars = [
        ("baseline", float(found["baseline_hosts"] or 0)),
        ("first-fit-decreasing", float(found["ffd_hosts"])),
        ("this plan", float(found["hosts_used"])),
        ("lower bound", float(found["lower_bound"])),
    ]
    hosts = sorted(found["hosts"], key=lambda h: -h["cpu_used"] / max(h["cpu_capacity"], 1e-9))
    fill = [(h["host"], 100.0 * h["cpu_used"] / max(h["cpu_capacity"], 1e-9)) for h in hosts[:40]]
    return render(
        request,
        "footprint.html.j2",
        plans=None,
        plan=found,
        hosts_chart=charts.hbar(bars, label="hosts needed", colours=charts.PALETTE[:4]),
        fill_chart=charts.hbar(fill, label="peak CPU fill per host", unit=" %", colour="#00838f"),
    )


# -- audit ----------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> HTMLResponse:
    total, entries = _store(request).audit_entries(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render(
        request,
        "audit.html.j2",
        entries=entries,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
    )


# -- OTA campaigns ------------------------------------------------------------------------------


def _campaigns(request: Request) -> Any:
    campaigns = request.app.state.providers.campaigns
    if campaigns is None:
        raise ApiError(404, "not_found", "OTA campaigns are not available in this installation")
    return campaigns


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request) -> HTMLResponse:
    found = _campaigns(request).list()
    return render(request, "campaigns.html.j2", campaigns=found)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(campaign_id: str, request: Request) -> HTMLResponse:
    found = _campaigns(request).get(campaign_id)
    if found is None:
        raise ApiError(404, "not_found", f"campaign {campaign_id!r} not found")
    waves = found["wave_progress"]
    wave_chart = charts.hbar(
        [(f"wave {w['wave'] + 1} ({w['share']:.0%})", float(w["installed"])) for w in waves],
        label="installed ECUs per wave",
        colour="#2e7d32",
    )
    failed_chart = charts.hbar(
        [(f"wave {w['wave'] + 1}", float(w["failed"])) for w in waves],
        label="failed installs per wave",
        colour="#c62828",
    )
    evidence = found["halt_evidence"] or {}
    signals = evidence.get("signals") or []
    evidence_chart = (
        charts.hbar(
            [(f"{s.get('signal')} updated", float(s.get("treated_rate") or 0)) for s in signals]
            + [
                (f"{s.get('signal')} control", float(s.get("control_rate") or 0))
                for s in signals
                if s.get("control_rate") is not None
            ],
            label="halt evidence: rate in updated vs control vehicles",
            colour="#ad1457",
        )
        if signals
        else None
    )
    return render(
        request,
        "campaign.html.j2",
        c=found,
        wave_chart=wave_chart,
        failed_chart=failed_chart,
        evidence=evidence,
        evidence_chart=evidence_chart,
    )


def _campaign_action(
    request: Request, campaign_id: str, action: str, reason: str, actor: str
) -> Response:
    from fleetops.api.routes_ota import change_campaign

    _campaigns(request)
    change_campaign(request, campaign_id, action, reason, actor)
    return RedirectResponse(f"/campaigns/{quote(campaign_id)}", status_code=303)


@router.post("/campaigns/{campaign_id}/pause")
def campaign_pause(
    campaign_id: str,
    request: Request,
    me: CurrentUser,
    reason: Annotated[str, Form(min_length=1, max_length=500)],
) -> Response:
    return _campaign_action(request, campaign_id, "pause", reason, me.name)


@router.post("/campaigns/{campaign_id}/resume")
def campaign_resume(
    campaign_id: str,
    request: Request,
    me: CurrentUser,
    reason: Annotated[str, Form(min_length=1, max_length=500)],
) -> Response:
    return _campaign_action(request, campaign_id, "resume", reason, me.name)


# -- security incidents ---------------------------------------------------------------------


def _incidents(request: Request) -> Any:
    incidents = request.app.state.providers.incidents
    if incidents is None:
        raise ApiError(404, "not_found", "security incidents are not available here")
    return incidents


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(
    request: Request, status: Annotated[str | None, Query(max_length=20)] = None
) -> HTMLResponse:
    provider = _incidents(request)
    status = status if status in provider.statuses else None
    rows = provider.list(status=status, limit=500)
    everything = provider.list(limit=1000) if status else rows
    counts = {s: 0 for s in provider.statuses}
    for row in everything:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    severities: dict[str, float] = {}
    for row in everything:
        key = f"severity {row['severity_id']}"
        severities[key] = severities.get(key, 0) + 1
    return render(
        request,
        "incidents.html.j2",
        incidents=rows,
        status=status,
        statuses=provider.statuses,
        status_chart=charts.stacked(counts, label="incidents by status", colours=STATUS_COLOURS),
        severity_chart=charts.hbar(
            sorted(severities.items(), reverse=True),
            label="incidents by severity",
            colour="#ad1457",
        ),
    )


STATUS_COLOURS = {
    "new": "#c62828",
    "acknowledged": "#f9a825",
    "in_progress": "#1565c0",
    "resolved": "#2e7d32",
    "false_positive": "#78909c",
}


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(incident_id: str, request: Request) -> HTMLResponse:
    provider = _incidents(request)
    found = provider.get(incident_id)
    if found is None:
        raise ApiError(404, "not_found", f"incident {incident_id!r} not found")
    per_rule: dict[str, float] = {}
    for alert in found["alerts"]:
        key = str(alert.get("title") or alert.get("rule_id") or "alert")
        per_rule[key] = per_rule.get(key, 0) + 1 + int(alert.get("duplicates") or 0)
    return render(
        request,
        "incident.html.j2",
        i=found,
        statuses=provider.statuses,
        timeline=charts.timeline(
            [
                (a["time"], str(a.get("title") or a.get("rule_id")), int(a.get("severity_id") or 0))
                for a in found["alerts"]
            ],
            label="incident timeline",
        ),
        rules_chart=charts.hbar(
            sorted(per_rule.items(), key=lambda kv: -kv[1])[:12],
            label="alerts per rule",
            colour="#ad1457",
        ),
    )


@router.post("/incidents/{incident_id}/status")
def incident_status_submit(
    incident_id: str,
    request: Request,
    me: CurrentUser,
    status: Annotated[str, Form(max_length=20)],
) -> Response:
    from fleetops.api.routes_soc import change_incident

    provider = _incidents(request)
    if status not in provider.statuses:
        raise ApiError(400, "bad_request", f"unknown status {status!r}")
    change_incident(request, incident_id, "status", status, me.name)
    return RedirectResponse(f"/incidents/{quote(incident_id)}", status_code=303)


@router.post("/incidents/{incident_id}/comments")
def incident_comment_submit(
    incident_id: str,
    request: Request,
    me: CurrentUser,
    body: Annotated[str, Form(min_length=1, max_length=5000)],
) -> Response:
    from fleetops.api.routes_soc import change_incident

    _incidents(request)
    change_incident(request, incident_id, "comment", body, me.name)
    return RedirectResponse(f"/incidents/{quote(incident_id)}", status_code=303)

"""A console over a simulated fleet, with one account and API token per role.

Shared by the API, authorisation, schemathesis and browser tests (their conftest files
turn these into fixtures). Everything is real: the lake comes from the simulator, the
campaign from the OTA rollout package, the store is SQLite on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fleetops
from fleetops.api.app import create_app
from fleetops.api.auth import hash_password, new_token_secret
from fleetops.api.permissions import Role
from fleetops.api.settings import Settings
from fleetops.api.store import Store
from fleetops.core.lake import Lake

ADMIN_PASSWORD = "admin-password-for-tests"
PASSWORD = "a-long-test-password"


@dataclass
class Console:
    app: Any  # FastAPI
    settings: Settings
    store: Store
    lake: Lake
    tokens: dict[str, str]  # role → bearer token
    vin: str
    campaign_id: str | None
    plan: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def auth(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}


def build_lake(folder: Path) -> Lake:
    fleetops.simulate("smoke", lake=folder)
    return Lake(folder)


def make_campaign(lake: Lake, root: Path) -> str | None:
    """A running OTA campaign for every BMS of the fleet, saved in the campaign store."""
    try:
        from fleetops.ota.rollout.campaign import Campaign, Image, Release, waves_from_shares
        from fleetops.ota.rollout.cohort import CohortSpec
        from fleetops.ota.rollout.store import CampaignStore
    except ImportError:
        return None
    ecus = lake.read("ecus")
    bms = sorted({r["hardware_id"] for r in ecus.to_pylist() if r["ecu"] == "BMS"})
    release = Release(
        "BMS 9.9",
        {h: Image(f"{h}-9.9.0.bin", "9.9.0") for h in bms},
        {h: Image(f"{h}-1.0.0.bin", "1.0.0") for h in bms},
    )
    campaign = Campaign.create(
        "BMS 9.9 rollout",
        release,
        CohortSpec.of(ecu="BMS"),
        lake.read("vehicles"),
        ecus,
        waves=waves_from_shares([20, 100]),
        campaign_id="cmp-test",
    )
    campaign.start("release-bot", "approved in tests")
    CampaignStore(root).save(campaign)
    return campaign.campaign_id


def make_plan(root: Path) -> str:
    """A small footprint plan folder, written by the footprint planner itself."""
    from fleetops.footprint import SolveOptions, TargetType, build_demand, solve, summarise
    from fleetops.footprint.report import write_plan
    from fleetops.footprint.synth import generate

    inventory = generate(40, seed=3, days=1)
    target = TargetType("16c-64g", 16, 64)
    demand = build_demand(inventory.workloads, 95.0, True)
    plan = solve(inventory.workloads, demand, inventory.hosts, target, SolveOptions(time_limit=2.0))
    summary = summarise(inventory, plan, target)
    write_plan(root / "small", plan, demand, summary, inventory.notes)
    return "small"


def make_incidents(path: Path, vin: str) -> str | None:
    """Incidents correlated by the SOC from OCSF findings, saved in its incident store."""
    try:
        from fleetops.core.ocsf import findings_from_records
        from fleetops.security.soc.correlate import correlate
        from fleetops.security.soc.store import IncidentStore
    except ImportError:
        return None
    t0 = 1_767_600_000_000  # 2026-01-05 08:00 UTC, inside the smoke scenario
    rows: list[dict[str, Any]] = [
        {
            "time": t0 + i * 90_000,
            "finding_uid": f"can-{i}",
            "source": "ids",
            "rule_id": "ids.can.injection" if i % 2 else "ids.can.timing",
            "title": "CAN frame injection" if i % 2 else "CAN timing anomaly",
            "severity_id": 4 + i % 2,
            "techniques": ["T0855"],
            "domain": "vehicle",
            "vin": vin,
            "source_file": "bus.log",
            "record_index": i,
            "evidence": "{}",
        }
        for i in range(5)
    ]
    incidents = correlate(findings_from_records(rows))
    with IncidentStore.sqlite(path) as store:
        store.save(incidents)
    return incidents[0].incident_id


def build_console(tmp: Path, lake: Lake, *, store: Store | None = None) -> Console:
    settings = Settings.load(
        lake=lake.root,
        store=str(tmp / "console.sqlite"),
        admin_password=ADMIN_PASSWORD,
        footprint_plans=tmp / "plans",
        campaigns=tmp / "campaigns",
        incidents=tmp / "incidents.sqlite",
        cache_seconds=0.2,
    )
    campaign_id = make_campaign(lake, tmp / "campaigns")
    plan = make_plan(tmp / "plans")
    first_vin = str(lake.query("SELECT min(vin) AS vin FROM vehicles").to_pylist()[0]["vin"])
    incident_id = make_incidents(tmp / "incidents.sqlite", first_vin)
    app = create_app(settings, store=store)
    store = app.state.store
    tokens: dict[str, str] = {}
    for role in Role:
        found = store.credentials("admin") if role is Role.ADMIN else None
        user = (
            found[0]
            if found is not None
            else store.create_user(role.value, hash_password(PASSWORD), role.value)
        )
        secret = new_token_secret()
        store.create_token(user.id, "tests", secret, None)
        tokens[role.value] = secret
    console = Console(app, settings, store, lake, tokens, first_vin, campaign_id, plan)
    console.extra["incident_id"] = incident_id
    return console

"""Dashboard pages that read through caches show the same as the uncached reads, and show
what changed as soon as it is saved."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleetops.api.app import create_app
from fleetops.web import charts
from fleetops.web.pages import VEHICLE_PLOTS
from tests.api.helpers import Console


def test_vehicle_page_plots_what_the_series_endpoint_answers(
    client: TestClient, console: Console
) -> None:
    """The page reads every plot in one query; each plot is the one the series endpoint's
    points draw, mark for mark."""
    page = client.get(f"/vehicles/{console.vin}", headers=console.auth("viewer"))
    assert page.status_code == 200
    plotted = 0
    for signal, title, unit in VEHICLE_PLOTS:
        points = client.get(
            f"/api/v1/vehicles/{console.vin}/series",
            params={"signal": signal, "points": 240},
            headers=console.auth("viewer"),
        ).json()["points"]
        if not points:
            continue
        series = console.app.state.fleet.series(console.vin, signal, points=240)[1]
        pts = [(p["t"], p["mean"], p["min"], p["max"]) for p in series]
        assert str(charts.line([(title, pts)], label=title, unit=unit)) in page.text
        plotted += 1
    assert plotted >= 3


def test_campaign_page_shows_a_change_saved_by_another_process(
    tmp_path: Path, console: Console
) -> None:
    """A campaign read once is kept, but a save by the rollout (a new file renamed over the
    old one) shows on the very next request."""
    if console.campaign_id is None:
        pytest.skip("fleetops.ota.rollout is not installed")
    from fleetops.ota.rollout.store import CampaignStore

    assert console.settings.campaigns is not None
    root = tmp_path / "campaigns"
    shutil.copytree(console.settings.campaigns, root)
    app = create_app(replace(console.settings, campaigns=root), store=console.store)
    path = f"/campaigns/{console.campaign_id}"
    state = re.compile(r'data-testid="campaign-state">(\w+)<')
    with TestClient(app) as c:
        before = c.get(path, headers=console.auth("viewer")).text
        assert c.get(path, headers=console.auth("viewer")).text == before
        campaign = CampaignStore(root).load(console.campaign_id)
        campaign.pause("rollout-daemon", "paused from outside the console")
        CampaignStore(root).save(campaign)
        after = c.get(path, headers=console.auth("viewer")).text
        listed = c.get("/api/v1/campaigns", headers=console.auth("viewer")).json()
    found = state.search(before)
    assert found is not None and found.group(1) == "running"
    found = state.search(after)
    assert found is not None and found.group(1) == "paused"
    assert "paused from outside the console" in after
    assert [c["state"] for c in listed if c["campaign_id"] == console.campaign_id] == ["paused"]

"""The dashboard in headless Chromium, as an operator uses it: sign in, read the fleet,
open a vehicle, acknowledge an incident, pause a campaign — and the audit log shows it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.helpers import PASSWORD, Console


def sign_in(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/vehicles")  # a protected page sends us to sign in, then back
    assert "/login" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/vehicles$"))
    assert page.text_content("[data-testid=whoami]").startswith(username)


def test_wrong_password_stays_on_sign_in(page: Any) -> None:
    page.goto("/login")
    page.fill("input[name=username]", "viewer")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").is_visible()
    assert "/login" in page.url


def test_fleet_engineer_opens_a_vehicle(page: Any, web_console: Console) -> None:
    sign_in(page, "fleet_engineer")
    page.goto("/")
    assert page.text_content("[data-testid=kpi-vehicles]") == "10"
    assert page.locator("svg.chart[aria-label='vehicles by region and health'] circle").count() > 0
    page.goto("/vehicles")
    first = page.locator("[data-testid=vehicle-link]").first
    vin = first.text_content()
    first.click()
    page.wait_for_url(re.compile(rf"/vehicles/{vin}$"))
    assert page.text_content("[data-testid=vehicle-vin]").startswith(vin)
    assert page.locator("svg[aria-label='traction battery state of charge'] polyline").count() == 1
    assert page.get_by_text("Software versions").is_visible()


def test_security_analyst_acknowledges_an_incident(page: Any, web_console: Console) -> None:
    if web_console.extra.get("incident_id") is None:
        pytest.skip("fleetops.security.soc is not installed")
    sign_in(page, "security_analyst")
    page.goto("/incidents")
    page.locator("[data-testid=incident-link]").first.click()
    assert page.text_content("[data-testid=incident-state]") == "new"
    assert page.locator("svg[aria-label='incident timeline'] circle").count() > 0
    page.click("[data-testid=acknowledge]")
    page.wait_for_load_state()
    assert page.text_content("[data-testid=incident-state]") == "acknowledged"
    _, entries = web_console.store.audit_entries(action="incident.status", limit=5)
    assert entries[0].actor == "security_analyst"
    assert entries[0].before["status"] == "new" and entries[0].after["status"] == "acknowledged"


def test_release_manager_pauses_a_campaign(page: Any, web_console: Console) -> None:
    if web_console.campaign_id is None:
        pytest.skip("fleetops.ota.rollout is not installed")
    sign_in(page, "release_manager")
    page.goto("/campaigns")
    page.locator("[data-testid=campaign-link]").first.click()
    assert page.text_content("[data-testid=campaign-state]") == "running"
    page.fill("input[name=reason]", "battery complaints from wave 1")
    page.click("[data-testid=pause]")
    page.wait_for_load_state()
    assert page.text_content("[data-testid=campaign-state]") == "paused"
    assert page.get_by_text("battery complaints from wave 1").first.is_visible()


def test_viewer_sees_no_change_buttons(page: Any, web_console: Console) -> None:
    sign_in(page, "viewer")
    if web_console.campaign_id is not None:
        page.goto(f"/campaigns/{web_console.campaign_id}")
        assert page.locator("[data-testid=pause], [data-testid=resume]").count() == 0
    page.goto("/audit")
    assert page.locator("h1").text_content() == "403"

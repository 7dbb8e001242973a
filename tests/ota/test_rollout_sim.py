"""The rollout halt, the virtual-fleet block and the closed loop, end to end."""

from __future__ import annotations

from datetime import timedelta

import orjson
import polars as pl
import pytest

from fleetops.core.ocsf import FINDING_SCHEMA, findings_from_records
from fleetops.ota.rollout.release_model import PRESETS, ReleaseBehaviour
from fleetops.ota.rollout.rollout_sim import simulate_rollout
from fleetops.ota.rollout.soc import campaign_incident, halt_findings, link_findings_to_campaigns
from fleetops.ota.rollout.virtual_fleet import test_release as run_virtual_test


@pytest.mark.parametrize("name", ["faulty-dtc", "faulty-boot", "faulty-install"])
def test_faulty_release_halts_in_the_canary(name: str) -> None:
    r = simulate_rollout(PRESETS[name], vehicles=10_000, seed=3)
    assert r.cohort > 5000
    assert r.halted and r.halt_wave == 0
    assert r.received <= r.wave_sizes[0]  # only the canary ever got it
    ev = r.evidence
    assert ev is not None and ev["signals"]
    sig = ev["signals"][0]
    for key in ("signal", "treated_count", "control_count", "p_value", "threshold"):
        assert key in sig
    if sig["signal"] != "install_error_threshold":
        assert sig["p_value"] <= sig["threshold"]
        assert ev["treated_vehicles"] > 0 and ev["control_vehicles"] > 5000


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_fleet_boot_failure_halts_in_the_canary(seed: int) -> None:
    # 3000 vehicles: a 22-ECU canary. Without the power gate, seeds 0-2 released wave 1
    # before +0.05 failed boots/day was significant (115-142 ECUs got it).
    r = simulate_rollout(PRESETS["faulty-boot"], vehicles=3000, seed=seed)
    assert r.wave_sizes[0] < 25
    assert r.halted and r.halt_wave == 0 and r.received <= r.wave_sizes[0]
    assert r.evidence is not None and r.evidence["signals"][0]["signal"] == "boot_failure"


@pytest.mark.parametrize("vehicles", [3000, 10_000])
def test_clean_release_completes_without_halt(vehicles: int) -> None:
    r = simulate_rollout(PRESETS["clean"], vehicles=vehicles, seed=5)
    assert not r.halted and r.final_state == "completed"
    assert r.received > 0.9 * r.cohort
    assert r.campaign is not None
    held = [t for t in r.campaign.transitions if t["actor"] == "power-gate"]
    if vehicles == 3000:
        # the small canary soaks past its 3 days until it has the power
        assert held and "waiting for power" in held[0]["reason"] and r.wave_days[1] > 3
    else:
        assert r.wave_days[1] <= 4  # a 70-ECU canary is powered within about its soak


@pytest.mark.slow
def test_false_halt_rate_over_seeds() -> None:
    # The design bound is alpha = 0.05 per campaign. With 12 seeds, if the true rate were
    # 5 %, 3 or more halts happen with probability 2 %: more than 2 means the bound fails.
    for vehicles in (10_000, 3000):
        runs = [
            simulate_rollout(PRESETS["clean"], vehicles=vehicles, seed=200 + s) for s in range(12)
        ]
        assert sum(r.halted for r in runs) <= 2
        assert all(r.final_state in ("completed", "halted") for r in runs)  # none paused


def test_virtual_fleet_blocks_a_regression_and_passes_a_clean_release() -> None:
    bad = run_virtual_test(PRESETS["faulty-dtc"], vehicles=100, days=3)
    assert bad.blocked
    assert any(s["signal"] == "dtc_target_ecu" and s["significant"] for s in bad.signals)
    good = run_virtual_test(PRESETS["clean"], vehicles=100, days=3)
    assert not good.blocked, good.reason


def test_virtual_fleet_ids_sees_changed_can_traffic() -> None:
    behaviour = ReleaseBehaviour.from_dict(
        {"name": "chatty", "can_effects": [{"kind": "extra_message", "id": "0x6F1", "rate_hz": 20}]}
    )
    res = run_virtual_test(behaviour, vehicles=60, days=2)
    assert res.blocked
    ids = next(s for s in res.signals if s["signal"] == "ids_alert")
    assert ids["significant"] and ids["release_count"] > ids["baseline_count"]


def test_blocked_release_cannot_start() -> None:
    from fleetops.ota.rollout.campaign import TransitionError

    r = simulate_rollout(PRESETS["clean"], vehicles=500, days=1, seed=1)
    assert r.campaign is not None
    c = r.campaign
    c.state = type(c.state)("draft")
    c.virtual_test = {"verdict": "blocked", "reason": "dtc regressed"}
    with pytest.raises(TransitionError, match="virtual-fleet"):
        c.start("a", "go")


def test_closed_loop_halt_finding_and_linked_ids_alerts() -> None:
    r = simulate_rollout(PRESETS["faulty-can"], vehicles=5000, seed=2, ids_rates=(0.0, 60.0))
    assert r.halted and r.campaign is not None
    c = r.campaign
    found = halt_findings(c)
    assert found.schema == pl.Schema(FINDING_SCHEMA)
    row = found.row(0, named=True)
    assert row["source"] == "ota" and row["campaign_id"] == c.campaign_id
    assert row["software_version"] == "3.1.0"
    ev = orjson.loads(row["evidence"])
    assert ev["signal"]["signal"] == "ids_alert" and ev["vins"] and ev["wave"] == 0

    installs = c.installs_frame().filter(pl.col("result") == "success")
    vin = installs["vin"][0]
    at = installs["time"][0]
    other = c.members.filter(~pl.col("vin").is_in(installs["vin"].to_list()))["vin"][0]
    ms = int(at.timestamp() * 1000)
    day = 86_400_000
    ids = findings_from_records(
        [
            {"time": ms + 2 * day, "finding_uid": "a", "source": "ids", "vin": vin},
            {"time": ms + 10 * day, "finding_uid": "b", "source": "ids", "vin": vin},
            {"time": ms - day, "finding_uid": "c", "source": "ids", "vin": vin},
            {"time": ms + day, "finding_uid": "d", "source": "ids", "vin": other},
        ]
    )
    linked = link_findings_to_campaigns(ids, c.installs_frame(), timedelta(days=7))
    assert linked.columns == ids.columns
    got = dict(zip(linked["finding_uid"], linked["campaign_id"], strict=True))
    assert got == {"a": c.campaign_id, "b": None, "c": None, "d": None}
    assert linked.filter(pl.col("finding_uid") == "a")["software_version"][0] == "3.1.0"
    incident = campaign_incident(c, ids)
    assert set(incident["source"]) == {"ota", "ids"} and incident.height == found.height + 1

"""Campaigns: cohorts, waves, states, the assignment protocol, persistence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from fleetops.core.errors import ValidationError
from fleetops.ota.rollout.campaign import (
    Campaign,
    Image,
    Release,
    State,
    TransitionError,
    Wave,
    waves_from_shares,
)
from fleetops.ota.rollout.cohort import CohortSpec
from fleetops.ota.rollout.health import HaltPolicy
from fleetops.ota.rollout.rollout_sim import default_release, simulated_inventory
from fleetops.ota.rollout.store import CampaignStore

T0 = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet() -> tuple[pl.DataFrame, pl.DataFrame]:
    return simulated_inventory(2000, seed=4)


def _campaign(fleet: tuple[pl.DataFrame, pl.DataFrame]) -> Campaign:
    veh, ecus = fleet
    return Campaign.create(
        "BMS 3.1", default_release(ecus), CohortSpec.of(ecu="BMS"), veh, ecus, seed=2, time=T0
    )


def test_cohort_selection_and_bad_input(fleet: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    veh, ecus = fleet
    c = _campaign(fleet)
    m = c.members
    assert set(m["ecu"]) == {"BMS"}
    assert not any(h.endswith("-A") for h in m["hardware_id"])  # no image for revision A
    sizes = c.wave_summary()["ecus"].to_list()
    assert sizes[0] == -(-m.height // 100) and sum(sizes) == m.height
    narrow = Campaign.create(
        "x",
        default_release(ecus),
        CohortSpec.parse(["model=Cirrus", "model_year=2025,2026", "ecu=BMS"]),
        veh,
        ecus,
    )
    assert set(narrow.members["model"]) == {"Cirrus"}
    assert set(narrow.members["model_year"]) <= {2025, 2026}
    with pytest.raises(ValidationError, match="unknown cohort field"):
        CohortSpec.parse(["colour=red"])
    with pytest.raises(ValidationError, match="cohort is empty"):
        Campaign.create("x", default_release(ecus), CohortSpec.of(region="atlantis"), veh, ecus)
    with pytest.raises(ValidationError, match="success threshold"):
        Wave(0.1, success_threshold=1.5)
    with pytest.raises(ValidationError, match="error threshold"):
        Wave(0.1, error_threshold=-0.1)
    with pytest.raises(ValidationError, match="increase"):
        waves_from_shares([10, 5, 100])
    with pytest.raises(ValidationError, match="whole cohort"):
        waves_from_shares([1, 10, 50])


def test_assignment_protocol_states_and_rollback(
    fleet: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    c = _campaign(fleet)
    m = c.members
    canary = m.filter(pl.col("wave") == 0).row(0, named=True)
    later = m.filter(pl.col("wave") == 2).row(0, named=True)
    image = c.release.images[canary["hardware_id"]]
    old = f"{canary['hardware_id']}-{canary['software_version']}.bin"
    assert c.assignment(canary["vin"], "s1", canary["hardware_id"], old) is None  # draft
    c.start("alice", "CAB-1 approved", T0)
    assert c.assignment(canary["vin"], "s1", canary["hardware_id"], old) == image.name
    assert c.assignment(later["vin"], "s2", later["hardware_id"], None) is None  # not released
    assert c.assignment("WFE00000000000000", "s", canary["hardware_id"], None) is None
    c.record_install(canary["vin"], "s1", "success", T0 + timedelta(hours=3))
    assert c.assignment(canary["vin"], "s1", canary["hardware_id"], image.name) is None
    c.pause("bob", "holiday freeze", T0 + timedelta(days=1))
    other = m.filter(pl.col("wave") == 0).row(1, named=True)
    assert c.assignment(other["vin"], "s3", other["hardware_id"], None) is None
    with pytest.raises(TransitionError):
        c.start("bob", "again")
    with pytest.raises(ValidationError, match="neither"):
        c.record_install(canary["vin"], "s1", "maybe")
    c.resume("bob", "freeze over", T0 + timedelta(days=2))
    # persisted with every transition, and loads back the same
    store = CampaignStore(tmp_path)
    store.save(c)
    back = store.load(c.campaign_id)
    assert back.state is State.RUNNING and back.treated_count() == 1
    assert [t["to"] for t in back.transitions] == ["draft", "running", "paused", "running"]
    assert all(t["actor"] and t["reason"] and t["time"] for t in back.transitions)
    back.rollback("carol", "regression found", T0 + timedelta(days=3))
    prev = back.release.rollback[canary["hardware_id"]]
    assert back.assignment(canary["vin"], "s1", canary["hardware_id"], image.name) == prev.name
    assert back.assignment(canary["vin"], "s1", canary["hardware_id"], prev.name) is None
    assert back.assignment(other["vin"], "s3", other["hardware_id"], old) is None
    with pytest.raises(TransitionError):
        back.resume("carol", "no")
    with pytest.raises(ValidationError, match="no campaign"):
        store.load("cmp-nope")


def test_rollback_needs_a_previous_image(fleet: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    veh, ecus = fleet
    rel = Release("r", {"AUR-BMS-B": Image("AUR-BMS-B-9.bin", "9.0.0")})
    c = Campaign.create("r", rel, CohortSpec.of(ecu="BMS"), veh, ecus, time=T0)
    c.start("a", "go", T0)
    with pytest.raises(ValidationError, match="roll back"):
        c.rollback("a", "oops")


def test_error_threshold_halts_a_wave(fleet: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    c = _campaign(fleet)
    c.start("a", "go", T0)
    canary = c.members.filter(pl.col("wave") == 0)
    for i, vin in enumerate(canary["vin"].to_list()[:5]):
        c.record_install(vin, f"s{i}", i >= 2, T0 + timedelta(hours=1))  # 2 failures of ~15
    c.monitor(None, T0 + timedelta(days=1))
    assert c.state is State.HALTED
    ev = c.halt_evidence
    assert ev is not None and ev["signals"][0]["signal"] in (
        "install_error_threshold",
        "install_failure",
    )


def _canary_installed(c: Campaign) -> None:
    for i, vin in enumerate(c.members.filter(pl.col("wave") == 0)["vin"].to_list()):
        c.record_install(vin, f"s{i}", "success", T0 + timedelta(hours=1))


def test_power_gate_holds_the_next_wave_until_powered(
    fleet: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    c = _campaign(fleet)
    c.start("a", "go", T0)
    _canary_installed(c)  # every canary ECU installed, no events: only exposure is missing
    for day in (1, 2, 3):
        c.monitor(None, T0 + timedelta(days=day))
    # soaked and installed, but ~14 ECUs × 3 days cannot show +0.04 failed boots/day
    assert c.state is State.RUNNING and c.released_waves == 1
    gate = c.power_gate
    assert gate is not None and gate["state"] == "waiting"
    assert "waiting for power: signal boot_failure, exposure needed" in gate["reason"]
    boot = next(x for x in gate["checks"] if x["signal"] == "boot_failure")
    assert boot["power"] < 0.8 and boot["needed"] > boot["exposure"] > 30
    assert sum("waiting for power" in t["reason"] for t in c.transitions) == 1
    day = 3
    while c.released_waves == 1:
        day += 1
        assert day < 17, "never powered"
        c.monitor(None, T0 + timedelta(days=day))
    assert c.state is State.RUNNING and c.power_gate is not None
    assert c.power_gate["state"] == "powered"
    assert all(x["power"] >= 0.8 for x in c.power_gate["checks"])
    assert "power >= 80%" in c.transitions[-1]["reason"]


def test_power_gate_pauses_for_a_human_and_can_be_waived(
    fleet: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    veh, ecus = fleet
    c = Campaign.create(
        "BMS 3.1",
        default_release(ecus),
        CohortSpec.of(ecu="BMS"),
        veh,
        ecus,
        seed=2,
        time=T0,
        policy=HaltPolicy(max_power_wait_days=2.0),
    )
    c.start("a", "go", T0)
    _canary_installed(c)
    for day in range(1, 6):
        c.monitor(None, T0 + timedelta(days=day))
    assert c.state is State.PAUSED and c.released_waves == 1  # waited days 3, 4, 5
    last = c.transitions[-1]
    assert last["actor"] == "power-gate" and "still underpowered" in last["reason"]
    store = CampaignStore(tmp_path)
    store.save(c)
    c = store.load(c.campaign_id)
    assert c.power_gate is not None and c.power_gate["state"] == "paused"
    c.resume(
        "bob",
        "CAB-7: canary evidence enough",
        T0 + timedelta(days=5, hours=1),
        waive_power_gate=True,
    )
    c.monitor(None, T0 + timedelta(days=6))
    assert c.state is State.RUNNING and c.released_waves == 2
    assert "waived" in c.transitions[-1]["reason"]


def test_power_gate_pauses_at_once_when_soaking_cannot_help(
    fleet: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    # a 1-point install-failure effect needs hundreds of installs; the canary has ~14
    veh, ecus = fleet
    policy = HaltPolicy(min_effects={"install_failure": 0.01})
    c = Campaign.create(
        "BMS",
        default_release(ecus),
        CohortSpec.of(ecu="BMS"),
        veh,
        ecus,
        seed=2,
        time=T0,
        policy=policy,
    )
    c.start("a", "go", T0)
    _canary_installed(c)
    for day in (1, 2, 3):
        c.monitor(None, T0 + timedelta(days=day))
    assert c.state is State.PAUSED
    assert "soaking cannot reach the power" in c.transitions[-1]["reason"]
    assert "install_failure, exposure needed unreachable" in c.transitions[-1]["reason"]


def test_halt_policy_power_settings_round_trip_and_are_checked() -> None:
    p = HaltPolicy(power=0.9, min_effects={"boot_failure": 0.01}, max_power_wait_days=5)
    assert HaltPolicy.from_dict(p.to_dict()) == p
    old = {k: v for k, v in HaltPolicy().to_dict().items() if k not in ("power", "min_effects")}
    assert HaltPolicy.from_dict(old).power == 0.8  # campaigns saved before the gate
    with pytest.raises(ValidationError, match="not monitored"):
        HaltPolicy(min_effects={"colour": 0.1})
    with pytest.raises(ValidationError, match="must be > 0"):
        HaltPolicy(min_effects={"dtc": 0.0})
    with pytest.raises(ValidationError, match="power"):
        HaltPolicy(power=1.0)

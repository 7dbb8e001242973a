"""``fleetops ota campaign`` through Typer's runner (the sub-app, as ota/cli.py mounts it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from fleetops.ota.rollout.cli import campaign_app
from fleetops.ota.rollout.store import CampaignStore

runner = CliRunner()


def test_campaign_lifecycle_from_the_cli(tmp_path: Path) -> None:
    store = str(tmp_path / "campaigns")
    res = runner.invoke(
        campaign_app,
        [
            "create",
            "BMS 3.1",
            "--simulate",
            "600",
            "--where",
            "ecu=BMS",
            "--version",
            "3.1.0",
            "--rollback-image",
            "AUR-BMS-B=AUR-BMS-B-3.0.0.bin:3.0.0",
            "--store",
            store,
            "--actor",
            "alice",
        ],
    )
    assert res.exit_code == 0, res.output
    (cid,) = CampaignStore(store).ids()
    for cmd in ("start", "pause", "resume", "cancel"):
        res = runner.invoke(campaign_app, [cmd, cid, "--store", store, "--reason", f"test {cmd}"])
        assert res.exit_code == 0, res.output
    res = runner.invoke(campaign_app, ["resume", cid, "--store", store])
    assert res.exit_code == 2 and "cancelled" in res.output
    res = runner.invoke(campaign_app, ["show", cid, "--store", store])
    assert res.exit_code == 0 and "cancelled" in res.output and "test pause" in res.output
    res = runner.invoke(campaign_app, ["list", "--store", store])
    assert res.exit_code == 0 and cid in res.output


def test_bad_input_is_refused_with_exit_2(tmp_path: Path) -> None:
    store = str(tmp_path)
    base = ["create", "x", "--simulate", "300", "--version", "9", "--store", store]
    for extra, message in (
        (["--where", "colour=red"], "unknown cohort field"),
        (["--where", "region=atlantis"], "cohort is empty"),
        (["--waves", "1,10,50"], "whole cohort"),
        (["--success-threshold", "1.5"], "success threshold"),
        (["--error-threshold", "2"], "error threshold"),
    ):
        res = runner.invoke(campaign_app, base + extra)
        assert res.exit_code == 2, (extra, res.output)
        assert message in res.output
    res = runner.invoke(campaign_app, ["show", "cmp-missing", "--store", store])
    assert res.exit_code == 2 and "no campaign" in res.output
    res = runner.invoke(campaign_app, ["simulate", "--release", "nonsense.yaml"])
    assert res.exit_code == 2 and "preset" in res.output


def test_simulate_writes_a_plot_and_test_release_blocks(tmp_path: Path) -> None:
    png = tmp_path / "r.png"
    res = runner.invoke(
        campaign_app,
        ["simulate", "--release", "faulty-boot", "--vehicles", "10000", "--plot", str(png)],
    )
    assert res.exit_code == 0, res.output
    assert '"halt_wave": 0' in res.output and png.stat().st_size > 10_000
    res = runner.invoke(
        campaign_app,
        ["test-release", "--release", "faulty-boot", "--vehicles", "100", "--days", "3"],
    )
    assert res.exit_code == 4 and "blocked" in res.output


def test_cli_shows_why_a_wave_waits_for_power(tmp_path: Path) -> None:
    sim = ["simulate", "--release", "clean", "--vehicles", "3000", "--days", "6"]
    res = runner.invoke(campaign_app, [*sim, "--plot", str(tmp_path / "w.png")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "wave 1 held: waiting for power: signal" in text
    assert "exposure needed" in text and "vehicle-days, have" in text

    store = str(tmp_path)
    create = ["create", "BMS", "--simulate", "2000", "--where", "ecu=BMS", "--version", "3.1.0"]
    res = runner.invoke(campaign_app, [*create, "--max-power-wait", "1", "--store", store])
    assert res.exit_code == 0, res.output
    st = CampaignStore(store)
    (cid,) = st.ids()
    c = st.load(cid)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    c.start("alice", "go", t0)
    for i, vin in enumerate(c.members.filter(pl.col("wave") == 0)["vin"].to_list()):
        c.record_install(vin, f"s{i}", "success", t0 + timedelta(hours=1))
    for day in (1, 2, 3):
        c.monitor(None, t0 + timedelta(days=day))
    st.save(c)
    res = runner.invoke(campaign_app, ["show", cid, "--store", store])
    text = " ".join(res.output.split())
    assert res.exit_code == 0 and "power gate, wave 0: waiting for power: signal" in text
    c.monitor(None, t0 + timedelta(days=4))  # past the 1-day cap: paused for a human
    st.save(c)
    res = runner.invoke(campaign_app, ["show", cid, "--store", store])
    assert "paused" in res.output and "underpowered" in " ".join(res.output.split())
    res = runner.invoke(
        campaign_app, ["resume", cid, "--store", store, "--waive-power-gate", "--reason", "CAB-9"]
    )
    assert res.exit_code == 0, res.output
    assert st.load(cid).power_waived_wave == 0

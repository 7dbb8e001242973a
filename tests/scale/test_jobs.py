"""Every distributed job gives the local backend's result on a real 2-worker Ray cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fleetops.core.errors import ConfigError
from fleetops.core.lake import Lake
from fleetops.scale import LocalBackend, RayBackend, WorkerLostError, backend_from_config, jobs
from fleetops.scale.storage import list_parquet, read_parquet
from fleetops.sim.scenario import Scenario

from .data import can_archive, rul_model, write_units

SCENARIO = Scenario(days=2)
TABLES = ("signals", "dtcs", "failures", "vehicles", "ecus")


def lake_tables(root: Path) -> dict[str, pa.Table]:
    lake = Lake(root)
    return {t: lake.query(f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES}


def dataset(root: str) -> pa.Table:
    tables = [read_parquet(p) for p in list_parquet(root)]
    return pa.concat_tables(tables)


def assert_close(ours: pa.Table, theirs: pa.Table) -> None:
    """Equal, except floats within 1e-9: DuckDB's parallel aggregates (avg, quantile) add in
    an order that varies from run to run in the last bits (the job's parts run DuckDB on
    one thread; the whole-lake path it is compared with does not)."""
    assert ours.schema.equals(theirs.schema) and ours.num_rows == theirs.num_rows
    for name in ours.column_names:
        a, b = ours.column(name), theirs.column(name)
        if pa.types.is_floating(a.type):
            assert np.allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-9, equal_nan=True)
        else:
            assert a.equals(b), name


def test_simulate_same_fleet_on_ray(ray_backend: RayBackend, tmp_path: Path) -> None:
    local = jobs.simulate(LocalBackend(), SCENARIO, str(tmp_path / "l"), vehicles=40, shard_size=16)
    seen: list[tuple[int, int]] = []
    remote = jobs.simulate(
        ray_backend,
        SCENARIO,
        str(tmp_path / "r"),
        vehicles=40,
        shard_size=16,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1] == (3, 3) and remote.parts == local.parts == 3
    assert (remote.rows_out, remote.rows_in) == (local.rows_out, local.rows_in) > (0, 0)
    ours, theirs = lake_tables(tmp_path / "l"), lake_tables(tmp_path / "r")
    for table in TABLES:
        assert ours[table].equals(theirs[table]), table
    vins = ours["vehicles"].column("vin")
    assert len(pc.unique(vins)) == 40  # fleet-wide unique VINs across shards
    # the shards are the same whatever the worker count: a 2-thread local run agrees
    jobs.simulate(
        LocalBackend(threads=2), SCENARIO, str(tmp_path / "l2"), vehicles=40, shard_size=16
    )
    assert lake_tables(tmp_path / "l2")["signals"].equals(ours["signals"])


def test_maintenance_jobs_same_on_ray(ray_backend: RayBackend, tmp_path: Path) -> None:
    units = str(write_units(tmp_path / "units"))
    model = rul_model(tmp_path / "model")
    for backend, tag in ((LocalBackend(), "l"), (ray_backend, "r")):
        prepared = jobs.prepare_training(backend, units, str(tmp_path / f"train-{tag}"))
        assert prepared.rows_in == prepared.rows_out > 0
        scored = jobs.score_rul(backend, units, model, str(tmp_path / f"score-{tag}"))
        assert scored.rows_out == 20
    train_l, train_r = dataset(str(tmp_path / "train-l")), dataset(str(tmp_path / "train-r"))
    assert train_l.equals(train_r)
    assert {"rul", "cycles_seen", "unit"} <= set(train_l.column_names)
    score_l, score_r = dataset(str(tmp_path / "score-l")), dataset(str(tmp_path / "score-r"))
    assert score_l.equals(score_r) and score_l.num_rows == 20


def test_ids_scoring_same_on_ray(ray_backend: RayBackend, tmp_path: Path) -> None:
    logs, model = can_archive(tmp_path / "can")
    local = jobs.ids_score(LocalBackend(), logs, model, str(tmp_path / "l"))
    remote = jobs.ids_score(ray_backend, logs, model, str(tmp_path / "r"))
    assert remote.rows_in == local.rows_in > 0 and local.rows_out > 0
    for table in ("alerts", "logs"):
        ours = dataset(str(tmp_path / "l" / table))
        assert ours.equals(dataset(str(tmp_path / "r" / table))), table
    attacks = set(dataset(str(tmp_path / "l" / "alerts")).column("attack").to_pylist())
    assert "flooding" in attacks


def test_ray_data_batches_same_as_local(ray_backend: RayBackend, tmp_path: Path) -> None:
    jobs.simulate(LocalBackend(), SCENARIO, str(tmp_path / "lake"), vehicles=20, shard_size=10)
    files = list_parquet(str(tmp_path / "lake"), "signals")

    def hot(batch: pa.Table) -> pa.Table:
        keep = pc.and_(
            pc.equal(batch.column("signal"), "Vehicle.Speed"), pc.greater(batch.column("value"), 90)
        )
        return batch.filter(keep)

    ours = (
        LocalBackend().map_batches(hot, files).sort_by([("vin", "ascending"), ("ts", "ascending")])
    )
    theirs = ray_backend.map_batches(hot, files).sort_by(
        [("vin", "ascending"), ("ts", "ascending")]
    )
    assert ours.num_rows > 0 and ours.equals(theirs.select(ours.column_names))


def _task_workers(name: str) -> list[int]:
    """Pids of Ray worker processes now running a task called ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(f"ray::{name}".encode()):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _kill_first(task: str, killed: list[int]) -> None:
    """SIGKILL the first worker process seen running ``task``; its pid goes to ``killed``."""
    deadline = time.monotonic() + 60
    while not killed and time.monotonic() < deadline:
        for pid in _task_workers(task):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            break
        time.sleep(0.02)


def test_worker_killed_mid_job_still_completes(ray_backend: RayBackend, tmp_path: Path) -> None:
    scenario = Scenario(days=3)
    expected = jobs.simulate(
        LocalBackend(), scenario, str(tmp_path / "l"), vehicles=48, shard_size=8
    )
    killed: list[int] = []
    killer = threading.Thread(target=_kill_first, args=("fleetops-simulate", killed))
    killer.start()
    summary = jobs.simulate(ray_backend, scenario, str(tmp_path / "r"), vehicles=48, shard_size=8)
    killer.join()
    assert killed, "no worker was running a part"
    assert summary.rows_out == expected.rows_out
    ours, theirs = lake_tables(tmp_path / "l"), lake_tables(tmp_path / "r")
    for table in TABLES:
        assert ours[table].equals(theirs[table]), table
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]  # nothing left over


def test_failed_job_leaves_no_output(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write_units(units, files=2)
    (units / "units-01.parquet").write_bytes(b"not parquet")
    with pytest.raises(pa.ArrowInvalid):
        jobs.prepare_training(LocalBackend(), str(units), str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["units"]


def test_existing_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="exists"):
        jobs.simulate(LocalBackend(), SCENARIO, str(tmp_path / "out"), vehicles=2)


def test_unreachable_cluster_is_a_clear_error() -> None:
    """In a fresh process (this one may hold the test cluster): exit code 3, at once."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "fleetops.scale", "info"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FLEETOPS_BACKEND": "ray", "FLEETOPS_RAY_ADDRESS": "127.0.0.1:9"},
    )
    assert result.returncode == 3, result.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in " ".join(result.stderr.split())
    assert time.monotonic() - started < 30


def test_worker_lost_beyond_retries_fails_the_job_cleanly(
    ray_backend: RayBackend, tmp_path: Path
) -> None:
    no_retries = RayBackend(max_retries=0)  # the session's cluster, parts never run again
    killer = threading.Thread(target=_kill_first, args=("fleetops-simulate", []))
    killer.start()
    with pytest.raises(WorkerLostError, match="retries exhausted"):
        jobs.simulate(no_retries, Scenario(days=3), str(tmp_path / "r"), vehicles=48, shard_size=8)
    killer.join()
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder


def test_backend_chosen_by_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETOPS_BACKEND", "local")
    assert backend_from_config().name == "local"
    assert backend_from_config(workers=2).workers == 2
    with pytest.raises(ConfigError, match="choose local or ray"):
        backend_from_config("spark")


def test_sigma_hunt_same_on_ray(ray_backend: RayBackend, tmp_path: Path) -> None:
    from .data import event_archive

    files, rules = event_archive(tmp_path / "events", files=5, events=3_000)
    rule_paths = [str(r) for r in rules]
    local = jobs.sigma_hunt(LocalBackend(), files, rule_paths, str(tmp_path / "l"))
    remote = jobs.sigma_hunt(ray_backend, files, rule_paths, str(tmp_path / "r"))
    assert remote.rows_in == local.rows_in > 3_000 and local.rows_out > 0
    ours = dataset(str(tmp_path / "l" / "findings")).sort_by("finding_uid")
    assert ours.equals(dataset(str(tmp_path / "r" / "findings")).sort_by("finding_uid"))
    assert ours.num_rows == local.rows_out


def test_fleet_risk_same_on_ray(ray_backend: RayBackend, tmp_path: Path) -> None:
    from fleetops.maintenance.fleet import FleetRiskModel, risk_scenario
    from fleetops.sim.fleet import simulate_fleet

    lake = Lake(tmp_path / "lake")
    simulate_fleet(risk_scenario(vehicles=20, days=6, seed=1, fault_rate=0.5)).write_to(lake)
    model = FleetRiskModel(components=("tyre_leak",), horizons_h=(72.0,), n_estimators=20, n_jobs=1)
    model.fit(lake).save(tmp_path / "model")
    runs = {}
    for backend, tag in ((LocalBackend(), "l"), (ray_backend, "r")):
        runs[tag] = jobs.fleet_risk(
            backend, lake.root, str(tmp_path / tag), model=tmp_path / "model", shards=3
        )
        assert runs[tag].parts == 3
    for table in ("features", "risk"):
        ours = dataset(str(tmp_path / "l" / table))
        assert ours.equals(dataset(str(tmp_path / "r" / table))), table
    assert runs["l"].rows_out == runs["r"].rows_out > 0
    # sharding the scan changes nothing: the same features as the model's whole-lake path
    whole = model.features(lake).sort("vin", "bucket").to_arrow()
    assert_close(dataset(str(tmp_path / "l" / "features")), whole)


def test_object_store_urls_through_fsspec() -> None:
    """The object-store path (no atomic rename): parts uploaded whole, manifest last."""
    out = "memory://fleetops-test/lake"
    summary = jobs.simulate(LocalBackend(), SCENARIO, out, vehicles=6, shard_size=3)
    files = list_parquet(out, "signals")
    assert files and all(f.startswith("memory://") for f in files)
    assert sum(read_parquet(f).num_rows for f in files) == summary.rows_out > 0
    with pytest.raises(ConfigError, match="exists"):
        jobs.simulate(LocalBackend(), SCENARIO, out, vehicles=6)


def test_cli_runs_a_job_and_reports_bad_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fleetops.scale.cli import scale_app

    runner = CliRunner()
    args = ["simulate", str(tmp_path / "lake"), "--scenario", "smoke", "--vehicles", "4"]
    result = runner.invoke(scale_app, [*args, "--days", "1", "--backend", "local"])
    assert result.exit_code == 0, result.output
    assert "rows_per_s" in result.output and Lake(tmp_path / "lake").tables()
    again = runner.invoke(scale_app, [*args, "--backend", "local"])
    assert again.exit_code == 2  # the output exists: a configuration error

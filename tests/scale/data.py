"""Small inputs for the distributed jobs, built from the capabilities' own generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from fleetops.maintenance.cmapss import SENSORS, SETTINGS
from fleetops.maintenance.model import RulRegressor
from fleetops.security.ids.model import train
from fleetops.sim.can import simulate_can
from fleetops.telemetry.canlog import write_can_log


def units_frame(units: range, seed: int = 0) -> pl.DataFrame:
    """C-MAPSS-shaped run-to-failure units: two operating regimes, sensors that drift."""
    rng = np.random.default_rng(seed)
    frames = []
    for unit in units:
        life = int(rng.integers(40, 90))
        cycle = np.arange(1, life + 1)
        regime = rng.integers(0, 2, life)
        wear = (cycle / life) ** 2
        data: dict[str, np.ndarray] = {"unit": np.full(life, unit), "cycle": cycle}
        for j, name in enumerate(SETTINGS):
            data[name] = regime * (10.0 + j) + rng.normal(0, 0.01, life)
        for j, name in enumerate(SENSORS):
            data[name] = 100 + 5 * regime + (j % 5) * wear * 3 + rng.normal(0, 0.3, life)
        frames.append(pl.DataFrame(data))
    return pl.concat(frames)


def write_units(folder: Path, files: int = 4, per_file: int = 5) -> Path:
    folder.mkdir(parents=True)
    for i in range(files):
        frame = units_frame(range(1 + i * per_file, 1 + (i + 1) * per_file), seed=i)
        frame.write_parquet(folder / f"units-{i:02d}.parquet")
    return folder


def rul_model(folder: Path) -> Path:
    model = RulRegressor(n_seeds=1, n_estimators=30, n_jobs=1)
    model.fit(units_frame(range(100, 130), seed=99))
    return model.save(folder)


def can_archive(folder: Path, logs: int = 3) -> tuple[list[str], Path]:
    """CAN logs (candump format) with attacks, and an IDS model trained on clean drives."""
    folder.mkdir(parents=True)
    model = train([simulate_can({"duration_s": 60, "seed": s}).frames for s in (1, 2)])
    model_path = model.save(folder / "ids.model")
    paths = []
    attacks = [
        {"type": "flooding", "start_s": 10, "duration_s": 2},
        {"type": "fuzzing", "start_s": 12, "duration_s": 2},
        {"type": "replay", "start_s": 8, "duration_s": 3, "message": "VCU_DriveCmd"},
    ]
    for i in range(logs):
        sim = simulate_can(
            {"duration_s": 20, "seed": 10 + i, "attacks": [attacks[i % len(attacks)]]}
        )
        paths.append(str(write_can_log(sim.frames, folder / f"drive-{i:02d}.log")))
    return paths, model_path


def event_archive(folder: Path, files: int, events: int = 5_000) -> tuple[list[str], list[Path]]:
    """Event files of the SOC's scenario (its five formats in turn, attacks included) and
    the Sigma rules shipped with the SOC."""
    import shutil

    from fleetops.security import soc
    from fleetops.security.soc.scenarios import generate

    sources = generate(benign_events=events, seed=7, vehicles=200).write(folder / "sources")
    names = sorted(sources)
    paths = []
    for i in range(files):
        name = names[i % len(names)]
        target = folder / f"{i:04d}-{name}"
        shutil.copy(sources[name], target)
        paths.append(str(target))
    return paths, [Path(soc.__file__).parent / "rules"]

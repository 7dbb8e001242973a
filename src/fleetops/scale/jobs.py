"""The distributed jobs: each is a list of parts and a part function that calls the
capability's own batch code (simulator, maintenance features and model, IDS scorer).

Every job writes a new output folder (see :mod:`fleetops.scale.storage`: staged, committed
whole) and returns a :class:`~fleetops.scale.backend.JobSummary`. Parts are independent
and named by their input, so the output is the same on any backend, with any number of
workers, in any order of completion, and after a part was run again.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.lake import Lake, conform
from fleetops.core.schema import PARTITION_COLUMN
from fleetops.core.types import vin_check_digit
from fleetops.scale.backend import Backend, JobSummary, Progress, timed
from fleetops.scale.storage import Output, list_parquet, read_parquet, write_parquet

_US_PER_DAY = 86_400_000_000
_PLANT_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # letters allowed in a VIN (no I, O, Q)
MAX_FLEET = len(_PLANT_LETTERS) * 1_000_000  # plant letter x 6-digit serial
DEFAULT_SHARD = 256


def _run(
    backend: Backend,
    job: str,
    fn: Callable[[Any], dict[str, int]],
    parts: Sequence[Any],
    output: Output,
    progress: Progress | None,
    info: dict[str, Any],
) -> tuple[list[dict[str, int]], float, list[str]]:
    """Run the parts, then commit the output; on any failure nothing becomes visible."""
    clock = timed()
    try:
        results = backend.map_parts(fn, parts, job=job, progress=progress)
        totals: dict[str, int] = {}
        for result in results:
            for key, value in result.items():
                totals[key] = totals.get(key, 0) + value
        files = output.commit({"job": job, "parts": len(parts), "rows": totals, **info})
    except BaseException:
        output.abort()
        raise
    return results, clock(), files


# -- the simulator, sharded --------------------------------------------------------------------


def shard_seed(seed: int, shard: int) -> int:
    """The seed of one shard: a function of the scenario's seed and the shard number only."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(1, np.uint32)[0])


def fleet_vin(vin: str, index: int) -> str:
    """``vin`` made unique in the sharded fleet: plant letter and serial from the vehicle's
    fleet-wide index (WMI, model, year kept; check digit recomputed)."""
    body = f"{vin[:10]}{_PLANT_LETTERS[index // 1_000_000]}{index % 1_000_000:06d}"
    return body[:8] + vin_check_digit(body) + body[9:]


@dataclass(frozen=True)
class SimShard:
    scenario: Any  # fleetops.sim.scenario.Scenario (kept Any: the import is lazy)
    shard: int
    first: int  # fleet-wide index of the shard's first vehicle
    vehicles: int
    out: str  # the output's staging folder


def simulate_shard(part: SimShard) -> dict[str, int]:
    """Simulate one shard of the fleet and write its tables (the part function)."""
    from fleetops.sim.fleet import simulate_fleet

    scenario = part.scenario.with_overrides(
        vehicles=part.vehicles, seed=shard_seed(part.scenario.seed, part.shard)
    )
    sim = simulate_fleet(scenario)
    original = pa.array([v.vin for v in sim.vehicles], pa.string())
    renamed = pa.array(
        [fleet_vin(v.vin, part.first + i) for i, v in enumerate(sim.vehicles)], pa.string()
    )
    tables = {
        "signals": sim.signals,
        "dtcs": sim.dtcs,
        "failures": sim.failures,
        "vehicles": sim.vehicles_table(),
        "ecus": sim.ecus_table(),
    }
    counts: dict[str, int] = {"vehicle_days": part.vehicles * scenario.days}
    name = f"part-s{part.shard:06d}.parquet"
    for table, raw in tables.items():
        data = conform(table, _rename_vins(raw, original, renamed))
        counts[table] = data.num_rows
        for partition, piece in _by_day(table, data):
            folder = [table, partition] if partition else [table]
            write_parquet(piece, "/".join([part.out, *folder, name]))
    return counts


def _rename_vins(data: pa.Table, original: pa.Array, renamed: pa.Array) -> pa.Table:
    if data.num_rows == 0:
        return data
    where = data.schema.get_field_index("vin")
    index = pc.index_in(data.column(where), value_set=original)
    return data.set_column(where, data.schema.field(where), renamed.take(index))


def _by_day(table: str, data: pa.Table) -> list[tuple[str, pa.Table]]:
    """The lake's layout: time series split into ``date=YYYY-MM-DD`` folders."""
    column = PARTITION_COLUMN.get(table)
    if column is None:
        return [("", data)]
    if data.num_rows == 0:
        return []
    days = data.column(column).cast(pa.int64()).to_numpy() // _US_PER_DAY
    out = []
    for day in np.unique(days):
        piece = data.filter(pa.array(days == day))
        out.append((f"date={np.datetime64(int(day), 'D')}", piece))
    return out


def simulate(
    backend: Backend,
    scenario: Any,
    out: str,
    *,
    vehicles: int | None = None,
    shard_size: int = DEFAULT_SHARD,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> JobSummary:
    """Simulate a large fleet as shards of ``shard_size`` vehicles into a new lake at ``out``.

    Shard ``k`` is ``scenario`` with its vehicles and the seed :func:`shard_seed`
    (``scenario.seed``, ``k``); VINs are made fleet-unique with :func:`fleet_vin`. The
    result depends on the scenario and ``shard_size`` only, never on the backend.
    """
    total = scenario.fleet.vehicles if vehicles is None else vehicles
    if total < 1 or shard_size < 1:
        raise ValidationError("vehicles and shard size must be at least 1")
    if total > MAX_FLEET:
        raise ValidationError(f"a sharded fleet holds at most {MAX_FLEET:,} vehicles")
    if any(f.vins for f in scenario.faults):
        raise ConfigError("faults that name VINs cannot be sharded (VINs are drawn per shard)")
    output = Output.create(out, overwrite=overwrite)
    parts = [
        SimShard(scenario, k, lo, min(shard_size, total - lo), output.staging)
        for k, lo in enumerate(range(0, total, shard_size))
    ]
    info = {"scenario": scenario.name, "seed": scenario.seed, "shard_size": shard_size}
    results, seconds, _ = _run(backend, "simulate", simulate_shard, parts, output, progress, info)
    return JobSummary(
        "simulate",
        backend.name,
        backend.workers,
        len(parts),
        seconds,
        rows_in=sum(r["vehicle_days"] for r in results),
        rows_out=sum(r["signals"] for r in results),
        output=out,
        extra={"vehicles": total, "days": scenario.days},
    )


# -- predictive maintenance --------------------------------------------------------------------


def _read_units(path: str) -> pl.DataFrame:
    from fleetops.maintenance.cmapss import validate

    frame = pl.from_arrow(read_parquet(path))
    assert isinstance(frame, pl.DataFrame)
    try:
        return validate(frame).sort("unit", "cycle")
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc}") from None


def _check_units_disjoint(files: Sequence[str], units: Sequence[pl.Series]) -> None:
    seen: dict[int, str] = {}
    for path, series in zip(files, units, strict=True):
        for unit in series.unique().to_list():
            if unit in seen:
                raise ValidationError(
                    f"unit {unit} is in {seen[unit]} and {path}: each unit's rows must be in "
                    "one file (rolling features need its whole history)"
                )
            seen[unit] = path


def _sample_part(path: str, every: int) -> pa.Table:
    frame = _read_units(path)
    picked = frame.filter(((pl.col("unit") * 7919 + pl.col("cycle")) % every) == 0)
    return picked.to_arrow()


@dataclass(frozen=True)
class FeaturePart:
    path: str
    index: int
    out: str
    normaliser: Any  # fleetops.maintenance.normalise.RegimeNormaliser
    windows: tuple[int, ...]
    cap: float | None


def training_part(part: FeaturePart) -> dict[str, int]:
    """Labels and features of one file of run-to-failure units (the part function)."""
    from fleetops.maintenance.cmapss import add_rul
    from fleetops.maintenance.features import FeatureBuilder

    frame = add_rul(_read_units(part.path), part.cap)
    feats = FeatureBuilder(part.windows).transform(
        part.normaliser.transform(frame), part.normaliser.sensors_
    )
    feats = feats.with_columns(frame["rul"])
    write_parquet(feats.to_arrow(), f"{part.out}/part-{part.index:06d}.parquet")
    return {"rows": frame.height, "units": frame["unit"].n_unique()}


def prepare_training(
    backend: Backend,
    inputs: str,
    out: str,
    *,
    windows: Sequence[int] | None = None,
    cap: float | None = None,
    sample_every: int = 10,
    max_regimes: int = 10,
    seed: int = 0,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> JobSummary:
    """Training data from a folder of C-MAPSS-shaped Parquet files (``unit, cycle,
    setting_1..3, s_1..s_21``; every unit in one file): features and capped RUL labels.

    The regime normaliser is fitted on a deterministic sample (rows with
    ``(unit*7919 + cycle) % sample_every == 0``) gathered by the backend, then every file is
    normalised and featurised with :class:`~fleetops.maintenance.features.FeatureBuilder`.
    """
    from fleetops.maintenance.cmapss import RUL_CAP
    from fleetops.maintenance.features import DEFAULT_WINDOWS
    from fleetops.maintenance.normalise import RegimeNormaliser

    files = list_parquet(inputs)
    if not files:
        raise ConfigError(f"{inputs}: no Parquet files")
    clock = timed()
    samples = backend.map_parts(
        functools.partial(_sample_part, every=sample_every), files, job="training-sample"
    )
    sample = pl.from_arrow(pa.concat_tables(samples))
    assert isinstance(sample, pl.DataFrame)
    normaliser = RegimeNormaliser(max_regimes=max_regimes, seed=seed).fit(sample)
    output = Output.create(out, overwrite=overwrite)
    parts = [
        FeaturePart(
            f,
            i,
            output.staging,
            normaliser,
            tuple(windows or DEFAULT_WINDOWS),
            RUL_CAP if cap is None else cap,
        )
        for i, f in enumerate(files)
    ]
    results, seconds, _ = _run(
        backend,
        "training-data",
        training_part,
        parts,
        output,
        progress,
        {"normaliser": normaliser.to_dict(), "sample_rows": sample.height},
    )
    return JobSummary(
        "training-data",
        backend.name,
        backend.workers,
        len(parts),
        clock(),
        rows_in=sum(r["rows"] for r in results),
        rows_out=sum(r["rows"] for r in results),
        output=out,
        extra={"units": sum(r["units"] for r in results), "commit_seconds": round(seconds, 3)},
    )


@functools.lru_cache(maxsize=4)
def _rul_model(folder: str) -> Any:
    from fleetops.maintenance.model import RulRegressor

    model = RulRegressor.load(folder)
    model.n_jobs = 1  # one part per CPU: the backend parallelises, LightGBM need not
    return model


@dataclass(frozen=True)
class ScorePart:
    path: str
    index: int
    out: str
    model: str  # artifact folder, readable by every worker


def score_part(part: ScorePart) -> dict[str, int]:
    """Features and the RUL of each unit at its last cycle, for one file (the part function)."""
    frame = _read_units(part.path)
    scored = _rul_model(part.model).predict_last(frame)
    write_parquet(scored.to_arrow(), f"{part.out}/part-{part.index:06d}.parquet")
    return {"rows": frame.height, "units": scored.height}


def score_rul(
    backend: Backend,
    inputs: str,
    model: str | Path,
    out: str,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> JobSummary:
    """Batch scoring: ``unit, predicted_rul`` at each unit's last cycle, with a saved
    :class:`~fleetops.maintenance.model.RulRegressor`, over a folder of C-MAPSS-shaped files."""
    files = list_parquet(inputs)
    if not files:
        raise ConfigError(f"{inputs}: no Parquet files")
    _rul_model(str(model))  # a bad artifact fails here, before any task starts
    output = Output.create(out, overwrite=overwrite)
    parts = [ScorePart(f, i, output.staging, str(model)) for i, f in enumerate(files)]
    results, seconds, _ = _run(backend, "rul-score", score_part, parts, output, progress, {})
    return JobSummary(
        "rul-score",
        backend.name,
        backend.workers,
        len(parts),
        seconds,
        rows_in=sum(r["rows"] for r in results),
        rows_out=sum(r["units"] for r in results),
        output=out,
    )


# -- IDS over CAN log archives -----------------------------------------------------------------

ALERTS = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("time", pa.float64()),
        pa.field("last_time", pa.float64()),
        pa.field("attack", pa.string()),
        pa.field("arbitration_id", pa.int64()),
        pa.field("signal", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("frames", pa.int64()),
        pa.field("evidence", pa.list_(pa.string())),
    ]
)
LOG_SUMMARY = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("frames", pa.int64()),
        pa.field("alerted_frames", pa.int64()),
        pa.field("alerts", pa.int64()),
        pa.field("max_score", pa.float64()),
    ]
)


@functools.lru_cache(maxsize=4)
def _ids_model(path: str) -> Any:
    from fleetops.security.ids.model import IdsModel

    return IdsModel.load(path)


@dataclass(frozen=True)
class CanLogPart:
    path: str
    index: int
    out: str
    model: str


def read_log(path: str) -> Any:
    """A CAN log as frames: candump logs with the fast reader, others with python-can."""
    from fleetops.telemetry.canlog import read_can_log, read_candump

    with Path(path).open("rb") as head:
        first = head.read(64).lstrip()
    if path.endswith(".log") and first.startswith(b"("):
        return read_candump(path)
    return read_can_log(path)


def ids_part(part: CanLogPart) -> dict[str, int]:
    """Score one CAN log with the batch scorer and write its alerts (the part function)."""
    from fleetops.security.ids.detect import alerts_from_scores, score_frames

    model = _ids_model(part.model)
    frames = read_log(part.path)
    scores = score_frames(model, frames)
    alerts = alerts_from_scores(model, frames, scores)
    name = Path(part.path).name
    rows = [{"file": name, **a.to_dict()} for a in alerts]
    write_parquet(
        pa.Table.from_pylist([{k: r[k] for k in ALERTS.names} for r in rows], schema=ALERTS),
        f"{part.out}/alerts/part-{part.index:06d}.parquet",
    )
    summary = {
        "file": [name],
        "frames": [len(frames)],
        "alerted_frames": [int(scores.alert.sum())],
        "alerts": [len(alerts)],
        "max_score": [float(scores.score.max()) if len(frames) else 0.0],
    }
    write_parquet(
        pa.table(summary, schema=LOG_SUMMARY), f"{part.out}/logs/part-{part.index:06d}.parquet"
    )
    return {"frames": len(frames), "alerts": len(alerts)}


def ids_score(
    backend: Backend,
    logs: Sequence[str],
    model: str | Path,
    out: str,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> JobSummary:
    """Score an archive of CAN logs (one part per log) with a trained IDS model; writes
    ``alerts/`` (one row per incident) and ``logs/`` (frames, alerted frames per log)."""
    files = sorted(str(p) for p in logs)
    if not files:
        raise ConfigError("no CAN logs to score")
    if len({Path(f).name for f in files}) != len(files):
        raise ConfigError("CAN logs of one job must have distinct file names")
    _ids_model(str(model))
    output = Output.create(out, overwrite=overwrite)
    parts = [CanLogPart(f, i, output.staging, str(model)) for i, f in enumerate(files)]
    results, seconds, _ = _run(backend, "ids-score", ids_part, parts, output, progress, {})
    return JobSummary(
        "ids-score",
        backend.name,
        backend.workers,
        len(parts),
        seconds,
        rows_in=sum(r["frames"] for r in results),
        rows_out=sum(r["alerts"] for r in results),
        output=out,
    )


# -- Sigma hunts over event archives -----------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _rules(paths: tuple[str, ...]) -> Any:
    from fleetops.security.soc.sigma import RuleSet

    return RuleSet.load(list(paths))


@dataclass(frozen=True)
class HuntPart:
    path: str
    index: int
    out: str
    rules: tuple[str, ...]
    fmt: str


def hunt_part(part: HuntPart) -> dict[str, int]:
    """Parse one event file and evaluate the Sigma rules on it (the part function)."""
    from fleetops.security.soc.parsers import parse_file

    batch = parse_file(Path(part.path), part.fmt)
    findings = _rules(part.rules).evaluate(batch) if batch.parsed else None
    if findings is not None and findings.height:
        write_parquet(findings.to_arrow(), f"{part.out}/findings/part-{part.index:06d}.parquet")
    return {
        "events": batch.parsed,
        "rejected": batch.rejected,
        "findings": 0 if findings is None else findings.height,
    }


def sigma_hunt(
    backend: Backend,
    files: Sequence[str],
    rules: Sequence[str | Path],
    out: str,
    *,
    fmt: str = "auto",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> JobSummary:
    """Sigma rules (files or folders) over an archive of event files (one part per file,
    parsed with the SOC parsers); writes ``findings/`` in the SOC's finding schema."""
    paths = sorted(str(p) for p in files)
    if not paths:
        raise ConfigError("no event files to hunt in")
    rule_paths = tuple(str(r) for r in rules)
    for rule in rule_paths:
        if not Path(rule).exists():
            raise ConfigError(f"rules path {rule} does not exist")
    ruleset = _rules(rule_paths)
    if not ruleset.rules:
        raise ConfigError(f"no usable Sigma rule under {', '.join(rule_paths)}")
    output = Output.create(out, overwrite=overwrite)
    parts = [HuntPart(p, i, output.staging, rule_paths, fmt) for i, p in enumerate(paths)]
    info = {"rules": len(ruleset.rules), "refused_rules": len(ruleset.refused)}
    results, seconds, _ = _run(backend, "sigma-hunt", hunt_part, parts, output, progress, info)
    return JobSummary(
        "sigma-hunt",
        backend.name,
        backend.workers,
        len(parts),
        seconds,
        rows_in=sum(r["events"] for r in results),
        rows_out=sum(r["findings"] for r in results),
        output=out,
        extra={"rejected": sum(r["rejected"] for r in results), **info},
    )


# -- fleet failure risk over the lake's signals ------------------------------------------------


@dataclass(frozen=True)
class BucketPart:
    lake: str
    vins: tuple[str, ...]
    bucket_hours: float


def bucket_part(part: BucketPart) -> pa.Table:
    """Per-vehicle indicator buckets of one VIN shard, scanned from the lake (part function)."""
    from fleetops.maintenance.fleet import bucket_frame

    lake = _OneThreadLake(part.lake)
    return bucket_frame(lake, bucket_hours=part.bucket_hours, vins=list(part.vins)).to_arrow()


class _OneThreadLake(Lake):
    """The lake, queried by DuckDB on one thread: a part has one CPU, and DuckDB's parallel
    aggregates (avg, quantile) add in a varying order, so only one thread gives the same
    bits on every run and backend."""

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = super().connect()
        con.execute("SET threads = 1")
        return con


@dataclass(frozen=True)
class RiskPart:
    features: pa.Table
    index: int
    out: str
    model: str | None


@functools.lru_cache(maxsize=4)
def _risk_model(folder: str) -> Any:
    from fleetops.maintenance.fleet import FleetRiskModel

    model = FleetRiskModel.load(folder)
    model.n_jobs = 1  # one part per CPU: the backend parallelises, LightGBM need not
    return model


def risk_part(part: RiskPart) -> dict[str, int]:
    """Write one VIN shard's features and, with a model, its failure risks (part function)."""
    write_parquet(part.features, f"{part.out}/features/part-{part.index:06d}.parquet")
    if part.model is None:
        return {"rows": part.features.num_rows, "risks": 0}
    feats = pl.from_arrow(part.features)
    assert isinstance(feats, pl.DataFrame)
    risks = _risk_model(part.model).predict_proba(feats)
    write_parquet(risks.to_arrow(), f"{part.out}/risk/part-{part.index:06d}.parquet")
    return {"rows": part.features.num_rows, "risks": risks.height}


def fleet_risk(
    backend: Backend,
    lake: str | Path,
    out: str,
    *,
    model: str | Path | None = None,
    shards: int | None = None,
    bucket_hours: float = 4.0,
    windows: Sequence[int] = (3, 6, 12),
    baseline: int = 6,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> JobSummary:
    """Fleet failure-risk features from the lake's ``signals`` and, with a saved
    :class:`~fleetops.maintenance.fleet.FleetRiskModel`, the calibrated risks.

    Three steps, all with the maintenance package's own functions:

    1. per shard of the VINs (parallel; ``shards`` contiguous runs of the sorted VINs,
       default four per worker): ``bucket_frame`` — the scan of the signals, the heavy
       part — giving per-vehicle indicator buckets. Each shard's query filters the whole
       ``signals`` table by VIN, so the shard count is kept proportional to the workers,
       not to the fleet (cost linear in the data);
    2. on the driver: ``lake_features`` over all buckets (its fleet-relative indicators
       need the fleet median of each bucket, so it sees the whole fleet; its input is a few
       rows per vehicle and bucket);
    3. per shard (parallel): features written (training data) and ``predict_proba``.

    Without ``model`` the output is the training data (``features/``); with it, also
    ``risk/`` (vin, bucket, t_end, component, horizon_h, p_fail, alert). The model's own
    bucket size, windows and baseline are used when it is given.
    """
    from fleetops.maintenance.fleet import lake_features

    clock = timed()
    if model is not None:
        fitted = _risk_model(str(model))
        bucket_hours, windows, baseline = fitted.bucket_hours, fitted.windows, fitted.baseline
    store = Lake(lake)
    if "signals" not in store.tables():
        raise ConfigError(f"the lake at {lake} has no signals")
    vins = store.query("SELECT DISTINCT vin FROM signals ORDER BY vin").column("vin").to_pylist()
    count = max(1, min(len(vins), shards or 4 * backend.workers))
    bounds = np.linspace(0, len(vins), count + 1).round().astype(int)
    runs = [tuple(vins[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
    buckets = backend.map_parts(
        bucket_part,
        [BucketPart(str(lake), run, bucket_hours) for run in runs],
        job="fleet-buckets",
    )
    frame = pl.from_arrow(pa.concat_tables(buckets))
    assert isinstance(frame, pl.DataFrame)
    feats = lake_features(frame, windows, baseline)
    output = Output.create(out, overwrite=overwrite)
    parts = []
    for i, run in enumerate(runs):
        piece = feats.filter(pl.col("vin").is_in(list(run))).sort("vin", "bucket")
        parts.append(
            RiskPart(piece.to_arrow(), i, output.staging, None if model is None else str(model))
        )
    info = {"bucket_hours": bucket_hours, "windows": list(windows), "baseline": baseline}
    results, _, _ = _run(backend, "fleet-risk", risk_part, parts, output, progress, info)
    return JobSummary(
        "fleet-risk",
        backend.name,
        backend.workers,
        len(parts),
        clock(),
        rows_in=int(frame["samples"].sum()),  # vehicle samples (timestamps) scanned
        rows_out=sum(r["risks"] or r["rows"] for r in results),
        output=out,
        extra={"vehicles": len(vins), "feature_rows": feats.height},
    )

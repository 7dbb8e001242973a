"""Fleet read model over the lake: a per-vehicle snapshot cached in memory, plus queries.

The snapshot (one row per vehicle: inventory, latest key signals, DTC counts, health) is
computed with DuckDB from the lake and rebuilt only when the lake's files change (checked
at most every ``refresh_s`` seconds), so listing and summarising 10 k vehicles is a Polars
operation on a small frame. Per-vehicle reads (time series, latest signals) go through a
row index of the signals files (:mod:`fleetops.api.lake_index`): DuckDB decodes only the
row group holding the vehicle, not the whole day. Time series are downsampled in DuckDB
(``time_bucket``), so a plot never ships more than ``points`` buckets. DTC pages filter an
in-memory copy of ``dtcs``. Both list the lake's folders on every call, so a file that
has just landed is read at once.

Health, per vehicle, relative to the newest sample in the lake (``as_of``):

* ``fault``  — a DTC in the last 24 h;
* ``watch``  — a DTC in the last 7 days, 12 V battery below 11.8 V, or SoC below 10 %;
* ``offline``— no telemetry in the last 24 h;
* ``ok``     — none of these.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from fleetops.api.lake_index import RowIndex, SliceCache, TableCopy
from fleetops.core.errors import ValidationError
from fleetops.core.lake import Lake
from fleetops.core.schema import DTCS

# The maintenance package's tables as the console reads them (their writer's schemas live in
# fleetops.maintenance.actions, which imports LightGBM: too heavy an import for the console).
WORK_ORDERS = pa.schema(
    [
        pa.field("rank", pa.int32()),
        pa.field("vin", pa.string()),
        pa.field("component", pa.string()),
        pa.field("due_by", pa.timestamp("us", tz="UTC")),
        pa.field("confidence", pa.float64()),
        pa.field("evidence", pa.string()),
        pa.field("created", pa.timestamp("us", tz="UTC")),
    ]
)
_LATEST = pa.schema(
    [
        pa.field("vin", pa.string()),
        pa.field("component", pa.string()),
        pa.field("horizon_h", pa.float64()),
        pa.field("p_fail", pa.float64()),
        pa.field("alert", pa.bool_()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
    ]
)
# The latest prediction per vehicle, component and horizon, riskiest first. One row per
# key (p_fail and alert from the same row); predictions of the same bucket from two runs
# tie on ts: the newer model's wins.
_LATEST_SQL = (
    "SELECT vin, component, horizon_h, p_fail, alert, ts FROM {table} "
    "QUALIFY row_number() OVER (PARTITION BY vin, component, horizon_h "
    "ORDER BY ts DESC, model_created DESC NULLS LAST, p_fail DESC) = 1 "
    "ORDER BY p_fail DESC, vin, component, horizon_h"
)

SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
LV_VOLTAGE = "Vehicle.LowVoltageBattery.CurrentVoltage"
ODOMETER = "Vehicle.TraveledDistance"
LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
KEY_SIGNALS = {
    "soc": SOC,
    "lv_voltage": LV_VOLTAGE,
    "odometer_km": ODOMETER,
    "lat": LATITUDE,
    "lon": LONGITUDE,
}
HEALTH_STATES = ("ok", "watch", "fault", "offline")
LV_LOW_V = 11.8
SOC_LOW = 10.0

_SNAPSHOT_SCHEMA: dict[str, Any] = {
    "vin": pl.String,
    "model": pl.String,
    "model_year": pl.Int16,
    "region": pl.String,
    "last_seen": pl.Datetime("us", "UTC"),
    **{k: pl.Float64 for k in KEY_SIGNALS},
    "dtcs": pl.Int64,
    "dtcs_24h": pl.Int64,
    "dtcs_7d": pl.Int64,
    "last_dtc": pl.Datetime("us", "UTC"),
    "health": pl.String,
}


@dataclass(frozen=True)
class Snapshot:
    vehicles: pl.DataFrame  # one row per vehicle, _SNAPSHOT_SCHEMA
    ecus: pl.DataFrame  # vin, ecu, hardware_id, software_version
    as_of: datetime | None  # newest sample in the lake
    first: datetime | None  # oldest day partition of signals
    signature: tuple[Any, ...]
    built_in_s: float


def lake_signature(lake: Lake) -> tuple[Any, ...]:
    """Changes whenever a file is published into (or removed from) the lake."""
    parts: list[Any] = []
    for table in ("vehicles", "ecus", "dtcs", "signals", "rul_predictions", "work_orders"):
        folder = lake.root / table
        if not folder.is_dir():
            parts.append((table, 0, 0.0))
            continue
        newest, count = 0.0, 0
        for sub in [folder, *(p for p in folder.iterdir() if p.is_dir())]:
            stat = sub.stat()  # a directory's mtime moves when a file is renamed into it
            newest = max(newest, stat.st_mtime)
            count += stat.st_nlink
        parts.append((table, count, newest))
    return tuple(parts)


class FleetData:
    """Reads for the fleet endpoints; thread-safe, one DuckDB connection with a cursor a call."""

    def __init__(self, lake: Lake, *, refresh_s: float = 5.0) -> None:
        self.lake = lake
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._checked = 0.0
        self._con: duckdb.DuckDBPyConnection | None = None
        self._summary: tuple[Snapshot, dict[str, Any]] | None = None
        self._signal_rows = RowIndex(lake.root / "signals")
        self._slices = SliceCache(max_rows=1_000_000)  # ≈ 80 vehicle-days of 37 signals, ≈ 60 MB
        self._dtcs = TableCopy(
            lake.root / "dtcs",
            DTCS,
            f"SELECT {', '.join(DTCS.names)} FROM {{table}} ORDER BY ts DESC, vin, code",
        )
        # Both pages read these on every request: the whole appended table aggregated per
        # request grows with every `maintenance predict` run; a copy reloads once a run.
        self._predictions = TableCopy(lake.root / "rul_predictions", _LATEST, _LATEST_SQL)
        self._predictions_by_vin: tuple[pl.DataFrame, dict[str, pl.DataFrame]] | None = None
        self._work_orders = TableCopy(
            lake.root / "work_orders",
            WORK_ORDERS,
            f"SELECT {', '.join(WORK_ORDERS.names)} FROM {{table}} "
            "ORDER BY rank, created DESC, vin, component",
        )

    # -- connection and snapshot ------------------------------------------------------------

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own (one per call: DuckDB cursors are per thread)."""
        self.snapshot()  # makes sure the views match the lake's files
        assert self._con is not None
        cursor = self._con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self._cursor() as cursor:
            rows: list[dict[str, Any]] = cursor.sql(sql, params=params).to_arrow_table().to_pylist()
            return rows

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        current = self._snapshot
        if current is not None and now - self._checked < self.refresh_s:
            return current
        with self._lock:
            if self._snapshot is not None and now - self._checked < self.refresh_s:
                return self._snapshot
            signature = lake_signature(self.lake)
            if self._snapshot is None or self._snapshot.signature != signature:
                con = self.lake.connect()
                # Published files never change, so their footers can be kept between queries
                # (DuckDB still checks each file's mtime); per-vehicle reads are then a few ms.
                con.execute("SET GLOBAL parquet_metadata_cache = true")
                self._snapshot = self._build(con, signature)
                recent = self._signal_rows.days()[-2:]
                if recent:  # index the default window now rather than on a page's first plot
                    self._signal_rows.files(con, date.fromisoformat(recent[0]), None)
                old, self._con = self._con, con
                if old is not None:
                    old.close()
            self._checked = now
            return self._snapshot

    def _build(self, con: duckdb.DuckDBPyConnection, signature: tuple[Any, ...]) -> Snapshot:
        start = time.perf_counter()
        days = self._signal_rows.days()
        latest: pl.DataFrame | None = None
        as_of: datetime | None = None
        if days:
            recent = days[-2:]  # newest values live in the newest partitions
            filters = ", ".join(
                f"arg_max(value, ts) FILTER (WHERE signal = '{path}') AS {name}"
                for name, path in KEY_SIGNALS.items()
            )
            wanted = ", ".join(f"'{p}'" for p in KEY_SIGNALS.values())
            latest = pl.DataFrame(
                con.sql(
                    f"SELECT vin, max(ts) AS last_seen, {filters} FROM signals "
                    f"WHERE date >= ?::DATE AND signal IN ({wanted}) GROUP BY vin",
                    params=[recent[0]],
                ).to_arrow_table()
            )
            if latest.height:
                as_of = latest.get_column("last_seen").max()  # type: ignore[assignment]
        vehicles = pl.DataFrame(
            con.sql("SELECT vin, model, model_year, region FROM vehicles").to_arrow_table()
        )
        ref = as_of or datetime.now(UTC)
        dtcs = pl.DataFrame(
            con.sql(
                "SELECT vin, count(*) AS dtcs, "
                "count(*) FILTER (WHERE ts > ?::TIMESTAMPTZ - INTERVAL 24 HOUR) AS dtcs_24h, "
                "count(*) FILTER (WHERE ts > ?::TIMESTAMPTZ - INTERVAL 7 DAY) AS dtcs_7d, "
                "max(ts) AS last_dtc FROM dtcs GROUP BY vin",
                params=[ref, ref],
            ).to_arrow_table()
        )
        frame = vehicles.with_columns(pl.col("model_year").cast(pl.Int16))
        if latest is not None and latest.height:
            frame = frame.join(latest, on="vin", how="left")
        if dtcs.height:
            frame = frame.join(dtcs, on="vin", how="left")
        for name, dtype in _SNAPSHOT_SCHEMA.items():
            if name not in frame.columns and name != "health":
                frame = frame.with_columns(pl.lit(None, dtype).alias(name))
        frame = frame.with_columns(
            [pl.col(c).fill_null(0).cast(pl.Int64) for c in ("dtcs", "dtcs_24h", "dtcs_7d")]
        )
        offline_before = ref - timedelta(hours=24)
        frame = frame.with_columns(
            pl.when(pl.col("dtcs_24h") > 0)
            .then(pl.lit("fault"))
            .when(pl.col("last_seen").is_null() | (pl.col("last_seen") < offline_before))
            .then(pl.lit("offline"))
            .when(
                (pl.col("dtcs_7d") > 0)
                | (pl.col("lv_voltage") < LV_LOW_V)
                | (pl.col("soc") < SOC_LOW)
            )
            .then(pl.lit("watch"))
            .otherwise(pl.lit("ok"))
            .alias("health")
        )
        frame = frame.select([pl.col(n).cast(t) for n, t in _SNAPSHOT_SCHEMA.items()]).sort("vin")
        ecus = pl.DataFrame(
            con.sql(
                "SELECT vin, ecu, hardware_id, software_version FROM ecus ORDER BY vin, ecu"
            ).to_arrow_table()
        )
        first = datetime.fromisoformat(days[0]).replace(tzinfo=UTC) if days else None
        return Snapshot(frame, ecus, as_of, first, signature, time.perf_counter() - start)

    # -- reads ------------------------------------------------------------------------------

    def vehicles(
        self,
        *,
        region: str | None = None,
        model: str | None = None,
        health: str | None = None,
        vin_prefix: str | None = None,
        software: tuple[str, str] | None = None,  # (ecu, version)
        vins: list[str] | None = None,
        sort: str = "vin",
        descending: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, pl.DataFrame]:
        snap = self.snapshot()
        frame = snap.vehicles
        if region is not None:
            frame = frame.filter(pl.col("region") == region)
        if model is not None:
            frame = frame.filter(pl.col("model") == model)
        if health is not None:
            frame = frame.filter(pl.col("health") == health)
        if vin_prefix:
            frame = frame.filter(pl.col("vin").str.starts_with(vin_prefix.upper()))
        if vins is not None:
            frame = frame.filter(pl.col("vin").is_in(vins))
        if software is not None:
            ecu, version = software
            having = snap.ecus.filter(
                (pl.col("ecu") == ecu) & (pl.col("software_version") == version)
            ).get_column("vin")
            frame = frame.filter(pl.col("vin").is_in(having.implode()))
        if sort not in frame.columns:
            raise ValidationError(f"cannot sort by {sort!r}")
        if sort != "vin" or descending:
            frame = frame.sort([sort, "vin"], descending=[descending, False], nulls_last=True)
        return frame.height, frame.slice(offset, limit)

    def vehicle(self, vin: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        snap = self.snapshot()
        row = snap.vehicles.filter(pl.col("vin") == vin.upper())
        if row.is_empty():
            return None
        ecus = snap.ecus.filter(pl.col("vin") == vin.upper()).drop("vin").to_dicts()
        return row.to_dicts()[0], ecus

    def summary(self) -> dict[str, Any]:
        """Computed once per snapshot (the lake's files did not change: same answer)."""
        snap = self.snapshot()
        cached = self._summary
        if cached is not None and cached[0] is snap:
            return cached[1]
        result = self._summarise(snap)
        self._summary = (snap, result)
        return result

    def _summarise(self, snap: Snapshot) -> dict[str, Any]:
        v = snap.vehicles
        health = {s: 0 for s in HEALTH_STATES} | dict(v.group_by("health").len().iter_rows())
        regions = (
            v.group_by("region")
            .agg(
                pl.len().alias("vehicles"),
                *[(pl.col("health") == s).sum().alias(s) for s in HEALTH_STATES],
                pl.col("dtcs_7d").sum().alias("dtcs_7d"),
                pl.col("lat").mean().alias("lat"),
                pl.col("lon").mean().alias("lon"),
                pl.col("soc").mean().alias("mean_soc"),
            )
            .sort("vehicles", descending=True)
        )
        models = (
            v.group_by("model", "model_year").len("vehicles").sort("model", "model_year").to_dicts()
        )
        software = (
            snap.ecus.group_by("ecu", "software_version")
            .len("vehicles")
            .sort(["ecu", "vehicles"], descending=[False, True])
            .to_dicts()
        )
        positions = (
            v.filter(pl.col("lat").is_not_null() & pl.col("lon").is_not_null())
            .with_columns(
                (pl.col("lat") * 10).round(0).truediv(10).alias("lat"),
                (pl.col("lon") * 10).round(0).truediv(10).alias("lon"),
            )
            .group_by("lat", "lon", "health")
            .len("vehicles")
            .sort("lat", "lon", "health")
            .to_dicts()
        )  # positions binned on a 0.1° grid: bounded size however large the fleet
        return {
            "vehicles": v.height,
            "as_of": snap.as_of,
            "data_since": snap.first,
            "health": health,
            "regions": regions.to_dicts(),
            "models": models,
            "software": software,
            "positions": positions,
            "top_dtcs": self.top_dtcs(),
            "snapshot_seconds": round(snap.built_in_s, 3),
        }

    def top_dtcs(self, limit: int = 10) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT code, any_value(description) AS description, count(*) AS count, "
            "count(DISTINCT vin) AS vehicles FROM dtcs GROUP BY code "
            "ORDER BY count DESC, code LIMIT ?",
            [limit],
        )

    def dtcs(
        self,
        *,
        vin: str | None = None,
        code: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[dict[str, Any]]]:
        with self._cursor() as cursor:
            frame = self._dtcs.frame(cursor)  # newest first, as the page shows them
        for column, value in (("vin", vin), ("code", code)):
            if value is not None:
                frame = frame.filter(pl.col(column) == value.upper())
        if since is not None:
            frame = frame.filter(pl.col("ts") >= since.astimezone(UTC))
        if until is not None:
            frame = frame.filter(pl.col("ts") < until.astimezone(UTC))
        return frame.height, frame.slice(offset, limit).to_dicts()

    def _vehicle_rows(
        self,
        vin: str,
        sql: str,
        where: str,
        params: dict[str, Any],
        first: date | None,
        last: date | None,
    ) -> list[dict[str, Any]]:
        """``sql`` over ``vin``'s signal rows in the day partitions ``first`` to ``last``.

        ``{rows}`` in ``sql`` stands for those rows (signal, ts, value) that match ``where``;
        ``params`` are named ($name). Rows are read where the row index says they lie.
        """
        with self._cursor() as cursor:
            slices = self._signal_rows.locate(cursor, vin, first, last)
            if not slices:
                return []
            cursor.register("vehicle_rows", self._slices.rows(cursor, slices))
            query = sql.format(rows=f"SELECT * FROM vehicle_rows WHERE {where}")
            result: list[dict[str, Any]] = (
                cursor.sql(query, params=params).to_arrow_table().to_pylist()
            )
            return result

    def signals(self, vin: str) -> list[dict[str, Any]]:
        """Every signal of a vehicle in the newest partitions: latest value and when."""
        days = self._signal_rows.days()
        if not days:
            return []
        return self._vehicle_rows(
            vin.upper(),
            "SELECT signal, arg_max(value, ts) AS value, max(ts) AS ts, count(*) AS samples "
            "FROM ({rows}) GROUP BY signal ORDER BY signal",
            "TRUE",
            {},
            date.fromisoformat(days[-2:][0]),
            None,
        )

    def series(
        self,
        vin: str,
        signal: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        points: int = 300,
    ) -> tuple[float, list[dict[str, Any]]]:
        """``signal`` of ``vin`` in ``points`` time buckets (min, mean, max each)."""
        bucket_s, found = self.series_many(vin, [signal], start=start, end=end, points=points)
        return bucket_s, found.get(signal, [])

    def series_many(
        self,
        vin: str,
        signals: list[str],
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        points: int = 300,
    ) -> tuple[float, dict[str, list[dict[str, Any]]]]:
        """Each of ``signals`` of ``vin`` as :meth:`series` answers it, in one DuckDB query
        (a vehicle page plots several: one query's overhead instead of one per plot; each
        bucket aggregates the same rows in the same order, so the numbers are the same)."""
        snap = self.snapshot()
        if snap.first is None or not signals:
            return 0.0, {}
        end = end or snap.as_of or datetime.now(UTC)
        start = start or max(end - timedelta(days=2), snap.first or end - timedelta(days=2))
        if end <= start:
            raise ValidationError("the series' end must come after its start")
        bucket_s = max((end - start).total_seconds() / points, 1.0)
        rows = self._vehicle_rows(
            vin.upper(),
            "SELECT signal, "
            "time_bucket(to_microseconds($bucket::BIGINT), ts, $start::TIMESTAMPTZ) AS t, "
            "min(value) AS min, avg(value) AS mean, max(value) AS max, count(*) AS n "
            "FROM ({rows}) GROUP BY signal, t ORDER BY signal, t",
            "list_contains($signals::VARCHAR[], signal) AND ts >= $start AND ts < $end",
            {"bucket": int(bucket_s * 1e6), "signals": signals, "start": start, "end": end},
            start.astimezone(UTC).date(),  # partitions are UTC days
            end.astimezone(UTC).date(),
        )
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault(row.pop("signal"), []).append(row)
        return bucket_s, found


class MaintenanceData:
    """What ``fleetops maintenance`` wrote into the lake: ``rul_predictions`` (risk of
    failure within a horizon, per vehicle and component) and ``work_orders`` (ranked, with
    their evidence in words). Read-only; empty until the maintenance pipeline has run.

    Both are read from in-memory copies (:class:`~fleetops.api.lake_index.TableCopy`)
    that reload when a table's files change, so a new run shows on the next request."""

    def __init__(self, fleet: FleetData) -> None:
        self.fleet = fleet

    def _latest(self) -> pl.DataFrame:
        with self.fleet._cursor() as cursor:
            return self.fleet._predictions.frame(cursor)

    def predictions(
        self,
        *,
        vin: str | None = None,
        component: str | None = None,
        alerts_only: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[dict[str, Any]]]:
        """The latest prediction per vehicle, component and horizon, riskiest first."""
        frame = self._latest()  # riskiest first
        if vin is not None:
            frame = self._vehicle(frame, vin.upper())
        if component is not None:
            frame = frame.filter(pl.col("component") == component)
        if alerts_only:
            frame = frame.filter(pl.col("alert"))
        return frame.height, frame.slice(offset, limit).to_dicts()

    def _vehicle(self, latest: pl.DataFrame, vin: str) -> pl.DataFrame:
        """``latest``'s rows of ``vin``, in order: a look-up in a split made once per copy
        (a filter over the fleet's rows cost ≈ 3 ms a vehicle page at 10 k vehicles)."""
        split = self.fleet._predictions_by_vin
        if split is None or split[0] is not latest:
            parts = latest.partition_by("vin", as_dict=True, maintain_order=True)
            split = latest, {str(key[0]): part for key, part in parts.items()}
            self.fleet._predictions_by_vin = split  # swapped whole: readers need no lock
        return split[1].get(vin, latest.clear())

    def at_risk(self) -> dict[str, int]:
        """Vehicles with an alerting latest prediction (any horizon), per component."""
        alerts = self._latest().filter(pl.col("alert"))
        counts = alerts.group_by("component").agg(pl.col("vin").n_unique().alias("vehicles"))
        return {str(c): int(n) for c, n in counts.iter_rows()}

    def work_orders(
        self, *, vin: str | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[int, list[dict[str, Any]]]:
        with self.fleet._cursor() as cursor:
            frame = self.fleet._work_orders.frame(cursor)  # by rank
        if vin is not None:
            frame = frame.filter(pl.col("vin") == vin.upper())
        return frame.height, frame.slice(offset, limit).to_dicts()

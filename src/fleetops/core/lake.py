"""The columnar lake: Parquet files partitioned by UTC day, queried through DuckDB.

Layout: ``<root>/<table>/date=YYYY-MM-DD/part-<id>.parquet`` for time series and
``<root>/<table>/part-<id>.parquet`` for the rest. A file becomes visible to queries only
when it is complete: it is written under a ``.tmp`` name, fsynced, then renamed.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.schema import PARTITION_COLUMN, SCHEMAS

_US_PER_DAY = 86_400_000_000
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A Parquet file written and fsynced under a temporary name, not yet visible."""

    tmp_path: Path
    final_path: Path
    rows: int

    def publish(self) -> Path:
        self.tmp_path.replace(self.final_path)
        _fsync_dir(self.final_path.parent)
        return self.final_path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with tmp.open("wb") as sink:
        sink.write(data)
        sink.flush()
        os.fsync(sink.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def conform(name: str, data: pa.Table) -> pa.Table:
    """Cast ``data`` to the core schema of table ``name`` (columns by name, extras kept)."""
    schema = SCHEMAS.get(name)
    if schema is None:
        return data
    missing = [f.name for f in schema if f.name not in data.column_names]
    if missing:
        raise ValidationError(f"table {name!r}: missing columns {missing}")
    extra = [c for c in data.column_names if c not in schema.names]
    try:
        core = data.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ValidationError(f"table {name!r}: columns do not fit the schema: {exc}") from exc
    for column in extra:
        core = core.append_column(column, data.column(column))
    return core


class Lake:
    """A Parquet + DuckDB lake in one folder; needs no server.

    >>> lake = Lake("fleetops-data/lake")          # doctest: +SKIP
    >>> lake.query("SELECT count(*) FROM signals")  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str], *, compression: str = "zstd") -> None:
        self.root = Path(root)
        self.compression = compression

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    # -- writing ---------------------------------------------------------------------------

    def stage(self, name: str, data: pa.Table, *, writer: str = "") -> list[StagedFile]:
        """Write ``data`` as fsynced, not yet visible files (one per day partition).

        ``writer`` goes into the file names so a writer can find its own leftovers.
        """
        if not _TABLE_NAME.match(name):
            raise ValidationError(f"{name!r} is not a valid table name (lower_snake_case)")
        data = conform(name, data)
        if data.num_rows == 0:
            return []
        staged = []
        for partition, part in self._split_by_day(name, data):
            folder = self.root / name / partition if partition else self.root / name
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"part-{writer}{'-' if writer else ''}{uuid.uuid4().hex}.parquet"
            tmp = final.with_name(final.name + TMP_SUFFIX)
            with tmp.open("wb") as sink:
                pq.write_table(part, sink, compression=self.compression)
                sink.flush()
                os.fsync(sink.fileno())
            staged.append(StagedFile(tmp, final, part.num_rows))
        return staged

    def write(self, name: str, data: pa.Table) -> list[Path]:
        """Append ``data`` to table ``name``; each file appears whole or not at all."""
        return [f.publish() for f in self.stage(name, data)]

    def replace(self, name: str, data: pa.Table) -> list[Path]:
        """Make ``data`` the whole content of table ``name`` (for small reference tables)."""
        old = list(self.files(name))
        written = self.write(name, data)
        for path in old:
            path.unlink()
        return written

    def _split_by_day(self, name: str, data: pa.Table) -> Iterable[tuple[str, pa.Table]]:
        column = PARTITION_COLUMN.get(name)
        if column is None:
            yield "", data
            return
        micros = data.column(column).cast(pa.int64()).to_numpy()
        days = micros // _US_PER_DAY
        first, last = int(days.min()), int(days.max())
        if first == last:
            yield _partition_name(first), data
            return
        order = np.argsort(days, kind="stable")
        sorted_days = days[order]
        bounds = np.flatnonzero(np.diff(sorted_days)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(order)]))
        for start, end in zip(starts, ends, strict=True):
            yield _partition_name(int(sorted_days[start])), data.take(order[start:end])

    # -- reading ---------------------------------------------------------------------------

    def files(self, name: str) -> Iterable[Path]:
        folder = self.root / name
        return sorted(folder.rglob("*.parquet")) if folder.is_dir() else []

    def tables(self) -> list[str]:
        """Tables that hold at least one file."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(("_", ".")) and any(p.rglob("*.parquet"))
        )

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per lake table.

        Core tables that hold no file yet are still defined (empty), so queries do not
        depend on what happened to be ingested.
        """
        con = duckdb.connect()
        present = set(self.tables())
        for name in sorted(present | set(SCHEMAS)):
            if name in present:
                glob = str(self.root / name / "**" / "*.parquet").replace("'", "''")
                hive = "true" if name in PARTITION_COLUMN else "false"
                con.execute(
                    f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{glob}', "
                    f"hive_partitioning={hive}, union_by_name=true)"
                )
            else:
                con.register(f"_{name}_empty", SCHEMAS[name].empty_table())
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM _{name}_empty")
        return con

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run SQL over the lake and return an Arrow table."""
        con = self.connect()
        try:
            relation = con.sql(sql, params=params)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as exc:
            raise ConfigError(f"query failed: {exc}") from exc
        finally:
            con.close()

    def query_pl(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        """Run SQL over the lake and return a Polars frame."""
        frame = pl.from_arrow(self.query(sql, params))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def read(self, name: str) -> pa.Table:
        """A whole table as Arrow (core tables come back in their schema, even when empty)."""
        files = list(self.files(name))
        if not files:
            if name in SCHEMAS:
                return SCHEMAS[name].empty_table()
            raise ValidationError(f"the lake at {self.root} has no table {name!r}")
        return self.query(f"SELECT * FROM {name}")


def _partition_name(day: int) -> str:
    date = np.datetime64(day, "D")
    return f"date={date}"

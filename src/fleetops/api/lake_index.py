"""Per-request reads of the lake that skip what they do not need, and never miss a file.

Published lake files never change (written under a temporary name, renamed into place,
each with a fresh name), so what is derived from a file — keyed by path, size and mtime —
never goes stale. Freshness comes from listing: every read lists the folders it needs, so
a file that landed a moment ago is read by that very request, as a DuckDB glob would be.

:class:`RowIndex` — where each vehicle's rows lie in the ``signals`` files. The lake is
partitioned by day, not by vehicle, and a file's rows come in the writer's order (the
simulator: vehicle after vehicle; ingest: by arrival), so Parquet statistics on ``vin``
span the whole fleet in every row group and a per-vehicle query decodes every row group
of the day. This index records, per file, the row range holding each VIN; a read then
filters on ``file_row_number`` too, which DuckDB uses to skip every row group outside the
range (one row group of 114 for a simulated vehicle-day).

:class:`SliceCache` — the rows of the vehicles read last (a vehicle page plots several
signals of one vehicle: the row group holding it is decoded once, not once a plot).

:class:`TableCopy` — a small table (``dtcs``, ``work_orders``), or a small aggregate of
one (the latest of ``rul_predictions``), held in memory, sorted, reloaded when its file set
changes: a page of it is then a filter and a slice, not a scan and a sort.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

_PARTITION = "date="
Stamp = tuple[int, int]  # (size, mtime_ns): tells a different file under the same name


def parquet_files(folder: Path | str) -> dict[str, Stamp]:
    """The published Parquet files directly in ``folder`` (none if it is gone)."""
    files: dict[str, Stamp] = {}
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return files
    for entry in entries:
        if entry.name.endswith(".parquet"):  # staged files end in .tmp: not published yet
            try:
                stat = entry.stat()
            except FileNotFoundError:  # removed meanwhile
                continue
            files[entry.path] = (stat.st_size, stat.st_mtime_ns)
    return files


@dataclass(frozen=True, slots=True)
class _FileRows:
    """One file's VINs (sorted) and, for each, the half-open row range that holds them."""

    stamp: Stamp
    vins: npt.NDArray[np.str_]
    lo: npt.NDArray[np.int64]
    hi: npt.NDArray[np.int64]

    def find(self, vin: str) -> tuple[int, int] | None:
        i = int(np.searchsorted(self.vins, vin))
        if i == self.vins.size or self.vins[i] != vin:
            return None
        return int(self.lo[i]), int(self.hi[i])


@dataclass(frozen=True, slots=True)
class Slice:
    """Rows ``[lo, hi)`` of ``path`` hold every row of ``vin`` in that file."""

    path: str
    stamp: Stamp
    vin: str
    lo: int
    hi: int


class RowIndex:
    """Per-file VIN row ranges of one day-partitioned table; thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._files: dict[str, _FileRows] = {}

    def days(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name[len(_PARTITION) :] for p in self.folder.glob(_PARTITION + "*"))

    def _listing(self, first: date | None, last: date | None) -> tuple[set[str], dict[str, Stamp]]:
        """The day folders from ``first`` to ``last`` (both included), and their files."""
        folders: set[str] = set()
        files: dict[str, Stamp] = {}
        for day in self.days():
            if (first is not None and day < first.isoformat()) or (
                last is not None and day > last.isoformat()
            ):
                continue
            folder = self.folder / (_PARTITION + day)
            folders.add(str(folder))
            files |= parquet_files(folder)
        return folders, files

    def files(
        self, con: duckdb.DuckDBPyConnection, first: date | None, last: date | None
    ) -> dict[str, _FileRows]:
        """The files of days ``first`` to ``last`` (None: open), listed now, indexed."""
        folders, wanted = self._listing(first, last)
        known = self._files
        if any(p not in known or known[p].stamp != s for p, s in wanted.items()):
            with self._lock:  # one indexing pass at a time; the others wait for its result
                known = self._files
                missing = {p: s for p, s in wanted.items() if p not in known or known[p].stamp != s}
                if missing:
                    # A new dict, swapped in whole: lookups read it without the lock.
                    known = {
                        p: rows for p, rows in known.items() if p in wanted or _kept(p, folders)
                    }
                    known.update(_index(con, missing))
                    self._files = known
        return {path: known[path] for path in sorted(wanted)}

    def locate(
        self, con: duckdb.DuckDBPyConnection, vin: str, first: date | None, last: date | None
    ) -> list[Slice]:
        """Where ``vin``'s rows lie in the files of days ``first`` to ``last``."""
        slices = []
        for path, rows in self.files(con, first, last).items():
            found = rows.find(vin)
            if found is not None:
                slices.append(Slice(path, rows.stamp, vin, *found))
        return slices


def _kept(path: str, listed: set[str]) -> bool:
    """Whether an indexed file outside this listing may still exist (a day not listed now,
    still on disk); files gone from a listed day, or whose day is gone, are dropped."""
    folder = Path(path).parent
    return str(folder) not in listed and folder.is_dir()


def _index(con: duckdb.DuckDBPyConnection, stamps: dict[str, Stamp]) -> dict[str, _FileRows]:
    """Each file's VINs and their row ranges, in one DuckDB pass over the ``vin`` columns."""
    ranges = con.sql(
        "SELECT filename, vin, min(file_row_number) AS lo, max(file_row_number) + 1 AS hi "
        "FROM read_parquet(?, filename = true, file_row_number = true) "
        "GROUP BY filename, vin ORDER BY filename",
        params=[sorted(stamps)],
    ).fetchnumpy()
    names = ranges["filename"].astype(str)
    vins = ranges["vin"].astype(str)
    empty = np.array([], np.int64)
    files = {path: _FileRows(stamp, vins[:0], empty, empty) for path, stamp in stamps.items()}
    bounds = np.flatnonzero(names[1:] != names[:-1]) + 1
    for start, end in zip(
        np.concatenate(([0], bounds)), np.concatenate((bounds, [names.size])), strict=True
    ):
        if start < end:
            path = str(names[start])
            order = start + np.argsort(vins[start:end])  # for searchsorted, whatever the collation
            files[path] = _FileRows(
                stamps[path],
                vins[order],
                ranges["lo"][order].astype(np.int64),
                ranges["hi"][order].astype(np.int64),
            )
    return files


class SliceCache:
    """Decoded :class:`Slice` rows (signal, ts, value), least recently used dropped first
    beyond ``max_rows`` rows in all; thread-safe. A slice names its file's stamp and a
    published file never changes, so an entry is never stale."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._tables: OrderedDict[Slice, pa.Table] = OrderedDict()
        self._rows = 0

    @property
    def held(self) -> tuple[int, int]:
        """(slices, rows) held now."""
        return len(self._tables), self._rows

    def rows(self, con: duckdb.DuckDBPyConnection, slices: list[Slice]) -> pa.Table:
        """All rows of ``slices``, read from the files where not cached."""
        tables = []
        for piece in slices:
            with self._lock:
                table = self._tables.get(piece)
                if table is not None:
                    self._tables.move_to_end(piece)
            if table is None:  # read outside the lock: others' hits need not wait
                table = con.sql(
                    "SELECT signal, ts, value FROM read_parquet($path, file_row_number = true) "
                    "WHERE file_row_number >= $lo AND file_row_number < $hi AND vin = $vin "
                    "ORDER BY file_row_number",  # file order, whichever thread read a row group
                    params={"path": piece.path, "lo": piece.lo, "hi": piece.hi, "vin": piece.vin},
                ).to_arrow_table()
                self._keep(piece, table)
            tables.append(table)
        return pa.concat_tables(tables).combine_chunks()  # one chunk: one scan, in order

    def _keep(self, piece: Slice, table: pa.Table) -> None:
        with self._lock:
            if piece not in self._tables:
                self._tables[piece] = table
                self._rows += table.num_rows
            while self._rows > self.max_rows and len(self._tables) > 1:
                _, dropped = self._tables.popitem(last=False)
                self._rows -= dropped.num_rows


class TableCopy:
    """The answer of ``query`` over a lake table, in memory as a Polars frame; thread-safe.

    ``query`` is SQL over the table's rows, named ``{table}`` in it; its answer must be
    small (``dtcs``: events, not samples; the latest prediction per vehicle, component and
    horizon) and comes back cast to ``schema``. Each :meth:`frame` call lists the table's
    folders and reloads the copy when its file set (paths, sizes, mtimes) differs from the
    one it holds: an appended file, and a table replaced whole (new files written, then
    the old ones removed: :meth:`fleetops.core.lake.Lake.replace`), both change it.
    """

    def __init__(self, folder: Path, schema: pa.Schema, query: str) -> None:
        self.folder = folder
        self.schema = schema
        self.query = query
        self._lock = threading.Lock()
        self._copy: tuple[dict[str, Stamp], pl.DataFrame] | None = None

    def _files(self) -> dict[str, Stamp]:
        files = parquet_files(self.folder)
        if self.folder.is_dir():
            for sub in self.folder.glob(_PARTITION + "*"):
                files |= parquet_files(sub)
        return files

    def frame(self, con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
        files = self._files()
        copy = self._copy
        if copy is not None and copy[0] == files:
            return copy[1]
        with self._lock:  # one reload at a time; the others wait for its result
            for attempt in range(3):
                copy = self._copy
                if copy is not None and copy[0] == files:
                    break
                try:
                    copy = files, self._load(con, sorted(files))
                except duckdb.IOException:
                    # A replace removed a listed file meanwhile: list again, read the new set.
                    if attempt == 2:
                        raise
                    files = self._files()
                    continue
                self._copy = copy
                break
            assert copy is not None
            return copy[1]

    def _load(self, con: duckdb.DuckDBPyConnection, paths: list[str]) -> pl.DataFrame:
        table = (
            con.sql(
                self.query.format(table="read_parquet(?, union_by_name = true)"),
                params=[paths],
            ).to_arrow_table()
            if paths
            else self.schema.empty_table()
        )
        frame = pl.from_arrow(table.select(self.schema.names).cast(self.schema))
        assert isinstance(frame, pl.DataFrame)
        return frame

"""Lake write speed: decoded signal batches into the lake vs a raw ``pq.write_table``.

    .venv/bin/python bench/ingest.py [--values 4000000]

Ours is ``Lake.write("signals", batch)``: schema conformance, day partitioning, zstd
Parquet, fsync and atomic rename. The baseline writes the same Arrow table with
``pyarrow.parquet.write_table`` defaults to one file, nothing else. A second row runs the
whole ingest commit (JSON messages decoded, validated, de-duplicated, committed) for
reference against the same baseline.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import Row, best_of, print_table
from fleetops.core.envelope import encode_message
from fleetops.core.lake import Lake
from fleetops.core.schema import SIGNALS
from fleetops.core.types import vin_check_digit
from fleetops.core.vss import default_catalog
from fleetops.telemetry.ingest import Ingestor, RawMessage

T0_MS = 1_767_225_600_000


def float_signals(count: int) -> list[str]:
    """Catalog signals that take any value in [0, 30] (so generated values all validate)."""
    fitting = [
        s.path
        for s in default_catalog().values()
        if s.datatype.value in ("float", "double")
        and (s.min is None or s.min <= 0)
        and (s.max is None or s.max >= 30)
    ]
    return fitting[:count]


def vins(count: int) -> list[str]:
    out = []
    for i in range(count):
        body = f"WF0XXGCF0{i:08d}"
        out.append(body[:8] + vin_check_digit(body) + body[9:])
    return out


def signal_batch(values: int, rng: np.random.Generator) -> pa.Table:
    """A decoded batch like ingest commits: 200 vehicles, 30 signals, 1 Hz, about 1.5 days."""
    paths = list(default_catalog())[:30]
    fleet = vins(200)
    rows = np.arange(values)
    vin = np.array(fleet, dtype=object)[rows % len(fleet)]
    signal = np.array(paths, dtype=object)[(rows // len(fleet)) % len(paths)]
    ts_us = (T0_MS + (rows // (len(fleet) * len(paths))) * 1000) * 1000
    return pa.table(
        {
            "vin": pa.array(vin, pa.string()),
            "ts": pa.array(ts_us, pa.int64()).cast(SIGNALS.field("ts").type),
            "signal": pa.array(signal, pa.string()),
            "value": pa.array(rng.normal(50, 10, values).round(2)),
        },
        schema=SIGNALS,
    )


def messages(values: int, rng: np.random.Generator) -> list[RawMessage]:
    paths = float_signals(8)
    per_message = 60 * len(paths)
    fleet = vins(200)
    out = []
    for n in range(values // per_message):
        vin = fleet[n % len(fleet)]
        seq = n // len(fleet)
        ts = T0_MS + (seq * 60 + np.arange(60)) * 1000
        payload = encode_message(vin, seq, ts, {p: rng.uniform(0, 30, 60).round(2) for p in paths})
        out.append(RawMessage(payload, "bench", vin))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=4_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    batch = signal_batch(args.values, rng)
    raw = messages(args.values // 4, rng)
    raw_values = sum(1 for _ in raw) * 60 * 8
    work = Path(tempfile.mkdtemp(prefix="fleetops-bench-"))
    try:

        def baseline() -> None:
            pq.write_table(batch, work / "raw.parquet")

        def ours() -> None:
            shutil.rmtree(work / "lake", ignore_errors=True)
            Lake(work / "lake").write("signals", batch)

        def full_ingest() -> None:
            shutil.rmtree(work / "ingest", ignore_errors=True)
            Ingestor(Lake(work / "ingest")).ingest(raw)

        base = args.values / best_of(baseline, args.repeat)
        rows = [
            Row(
                "decoded batch → lake",
                args.values / best_of(ours, args.repeat),
                base,
                "values/s",
                0.5,
            ),
            Row(
                "JSON messages → validated, de-duplicated commit",
                raw_values / best_of(full_ingest, args.repeat),
                base,
                "values/s",
            ),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(
        f"Lake ingest, one core, {args.values:,} signal values",
        rows,
        "fleetops",
        "pq.write_table",
    )


if __name__ == "__main__":
    main()

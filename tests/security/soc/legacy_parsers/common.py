"""What every text parser shares: lines as a frame, reasons, and the batch assembly.

A parser turns one whole file into a frame with one row per record (``record_index``,
``line``), computes every column with Polars expressions over that frame, and hands
:func:`finish` a ``reason`` expression: rows where it is null become events (and their
native fields), the others dead letters. So each record ends up in exactly one of the two.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import polars as pl

from fleetops.core.ocsf import DEAD_LETTER_SCHEMA, EventBatch, conform_events

MONTHS: dict[str, int] = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
YEAR_ENV = "FLEETOPS_LOG_YEAR"
"""Environment variable giving the year of the first record of year-less logs."""

IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
IP = rf"(?:{IPV4}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*[0-9A-Fa-f])"


def lines_frame(text: str) -> pl.DataFrame:
    """One row per non-blank line: ``record_index`` (1-based line number) and ``line``.

    Lines are split on ``\\n`` only (``str.splitlines`` would also split on form feeds and
    Unicode separators and so shift line numbers); a trailing ``\\r`` is dropped. Blank
    lines carry no record and are skipped, but keep their place in the numbering.
    """
    frame = pl.DataFrame({"line": text.split("\n")}, schema={"line": pl.String()})
    return (
        frame.with_row_index("record_index", offset=1)
        .with_columns(pl.col("record_index").cast(pl.Int64), pl.col("line").str.strip_suffix("\r"))
        .filter(pl.col("line").str.strip_chars().str.len_bytes() > 0)
    )


def first_reason(checks: Sequence[tuple[pl.Expr, pl.Expr | str]]) -> pl.Expr:
    """The reason of the first failed check (``True`` = failed), null when all pass."""
    return pl.coalesce(
        [
            pl.when(bad.fill_null(True)).then(pl.lit(why) if isinstance(why, str) else why)
            for bad, why in checks
        ]
        + [pl.lit(None, dtype=pl.String())]
    )


def quoted(expr: pl.Expr, limit: int = 40) -> pl.Expr:
    """``'value'`` cut to ``limit`` characters, for reasons such as ``bad timestamp 'xx'``."""
    return pl.format("'{}'", expr.fill_null("").str.slice(0, limit))


def status_id(expr: pl.Expr) -> pl.Expr:
    """OCSF status from a success/failure word (``success``, ``ok``, ``failed`` ...)."""
    word = expr.str.to_lowercase().str.strip_chars()
    return (
        pl.when(word.is_in(["success", "succeeded", "ok", "good", "true", "installed", "done"]))
        .then(pl.lit(1))
        .when(
            word.is_in(
                ["failure", "failed", "fail", "error", "bad", "false", "denied", "rolled_back"]
            )
            | word.str.starts_with("bad")
        )
        .then(pl.lit(2))
        .otherwise(pl.lit(0))
    )


def parse_time(expr: pl.Expr) -> pl.Expr:
    """UTC time from ISO 8601 (with offset, ``Z`` or none = UTC) or epoch s / ms / µs."""
    text = expr.cast(pl.String).str.strip_chars()
    iso = text.str.replace(r"[Zz]$", "+00:00").str.replace(r"^(\d{4}-\d\d-\d\d) ", "${1}T")
    number = text.cast(pl.Float64, strict=False)
    epoch_ms = (
        pl.when(number > 1e14)
        .then(number / 1000)  # microseconds
        .when(number > 1e11)
        .then(number)  # milliseconds
        .otherwise(number * 1000)  # seconds
    )
    return pl.coalesce(
        iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="ms"),
        iso.str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="ms"
        ).dt.replace_time_zone("UTC"),
        pl.from_epoch(epoch_ms.round(0).cast(pl.Int64, strict=False), time_unit="ms")
        .dt.replace_time_zone("UTC")
        .cast(pl.Datetime("ms", "UTC")),
    ).dt.convert_time_zone("UTC")


def yearless_time(
    frame: pl.DataFrame, month: str, day: str, clock: str, year: int | None
) -> pl.Series:
    """Times of year-less (RFC 3164 style) stamps, in record order.

    The year of the first record is ``year``, else ``$FLEETOPS_LOG_YEAR``, else chosen so
    that the last record is not in the future. A month two or more earlier than the
    record before it starts a new year (Dec → Jan, or Jun → Feb in a sparse log); one ten
    or more later (Jan → Dec) is a late line of the year before; a one-month step back
    (Feb 1 → Jan 31, lines slightly out of order) changes nothing.
    """
    # Month names (syslog) or numbers (Proxifier's "MM.DD").
    month_no = pl.coalesce(
        pl.col(month).replace_strict(MONTHS, default=None, return_dtype=pl.Int32),
        pl.col(month).cast(pl.Int32, strict=False),
    )
    # Forward-fill so that one bad month does not break the rollover count after it.
    filled = month_no.fill_null(strategy="forward").fill_null(strategy="backward")
    parts = frame.select(
        month_no.alias("m"),
        (
            pl.when((filled - filled.shift(1)) <= -2)
            .then(1)
            .when((filled - filled.shift(1)) >= 10)
            .then(-1)
            .otherwise(0)
            .fill_null(0)
            .cast(pl.Int32)
            .cum_sum()
            .alias("r")
        ),
        pl.col(day).alias("d"),
        pl.col(clock).alias("c"),
    )
    if year is None and os.environ.get(YEAR_ENV, "").strip().isdigit():
        year = int(os.environ[YEAR_ENV])
    if year is None:
        now = datetime.now(UTC)
        year = now.year
        if parts.height:
            last_m, last_r, last_d, _ = parts.row(parts.height - 1)
            if (
                last_m is not None
                and str(last_d).isdigit()
                and (last_m, int(last_d))
                > (
                    now.month,
                    now.day,
                )
            ):
                year -= 1
            year -= int(last_r)
    stamp = pl.format(
        "{}-{}-{} {}",
        pl.col("r") + year,
        pl.col("m").cast(pl.String).str.zfill(2),
        pl.col("d").str.zfill(2),
        pl.col("c"),
    )
    return parts.select(
        stamp.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="ms")
        .dt.replace_time_zone("UTC")
        .alias("time")
    ).to_series()


def finish(
    frame: pl.DataFrame,
    reason: pl.Expr,
    events: Mapping[str, pl.Expr],
    fields: Mapping[str, pl.Expr],
    source_file: str,
) -> EventBatch:
    """Split ``frame`` by ``reason`` into events + native fields and dead letters.

    ``frame`` has ``record_index`` and ``line`` (the raw record); ``events`` maps
    :data:`~fleetops.core.ocsf.EVENT_SCHEMA` names to expressions (``raw``,
    ``record_index`` and ``source_file`` are added), ``fields`` native names to
    expressions (cast to String, empty strings kept).
    """
    frame = frame.with_columns(reason.alias("_reason"))
    bad = frame.filter(pl.col("_reason").is_not_null())
    good = frame.filter(pl.col("_reason").is_null())
    event_frame = good.select(
        *[expr.alias(name) for name, expr in events.items()],
        pl.col("record_index"),
        pl.lit(source_file, dtype=pl.String()).alias("source_file"),
        pl.col("line").alias("raw"),
    )
    field_frame = good.select([expr.cast(pl.String).alias(name) for name, expr in fields.items()])
    dead = bad.select(
        pl.lit(source_file, dtype=pl.String()).alias("source_file"),
        pl.col("record_index").cast(pl.Int64),
        pl.col("_reason").alias("reason"),
        pl.col("line").alias("raw"),
    ).cast(DEAD_LETTER_SCHEMA)  # type: ignore[arg-type]
    return EventBatch(conform_events(event_frame), field_frame, dead)


def dead_letters(source_file: str, rows: Sequence[tuple[int, str, str]]) -> pl.DataFrame:
    """Dead letters from ``(record_index, reason, raw)`` tuples."""
    return pl.DataFrame(
        {
            "source_file": [source_file] * len(rows),
            "record_index": [r[0] for r in rows],
            "reason": [r[1] for r in rows],
            "raw": [r[2] for r in rows],
        },
        schema=DEAD_LETTER_SCHEMA,
    )

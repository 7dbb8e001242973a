"""Apache / nginx error logs and Proxifier proxy logs.

Error-log lines become Base events (service ``apache`` or ``nginx``, the logsource of the
SigmaHQ web-server error rules) with the level as severity; Proxifier connection records
become Network Activity events (category ``proxy``) with program, destination and bytes.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from fleetops.core.ocsf import Domain, EventBatch, EventClass, Severity, Status
from fleetops.security.soc.parsers.common import (
    IP,
    finish,
    first_reason,
    lines_frame,
    quoted,
    yearless_time,
)

_APACHE: Final = (
    r"^\[(?:[A-Z][a-z]{2} )?(?P<ts>[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)? \d{4})\] "
    r"\[(?:(?P<module>[^:\]\s]+):)?(?P<level>[A-Za-z]+\d?)\]"
    r"(?: \[pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?\])?"
    r"(?: \[(?:client|remote) (?P<client>[^\]]+)\])? ?(?P<msg>.*)$"
)
_NGINX: Final = (
    r"^(?P<ts>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>[a-z]+)\] "
    r"(?P<pid>\d+)#(?P<tid>\d+): (?P<msg>.*)$"
)
_LEVELS: Final = {
    "emerg": int(Severity.CRITICAL),
    "alert": int(Severity.CRITICAL),
    "crit": int(Severity.HIGH),
    "error": int(Severity.MEDIUM),
    "warn": int(Severity.LOW),
    "warning": int(Severity.LOW),
}


def parse_apache_error(text: str, source_file: str) -> EventBatch:
    """Apache 2.2/2.4 ``error_log`` and nginx ``error.log`` lines."""
    frame = lines_frame(text)
    a = pl.col("line").str.extract_groups(_APACHE)
    n = pl.col("line").str.extract_groups(_NGINX)
    frame = frame.with_columns(a.alias("_a"), n.alias("_n"))
    apache = pl.col("_a").struct.field("ts").is_not_null()

    def pick(name: str) -> pl.Expr:
        both = name in ("ts", "level", "pid", "tid", "msg")
        ngx = pl.col("_n").struct.field(name) if both else pl.lit(None, dtype=pl.String())
        return pl.when(apache).then(pl.col("_a").struct.field(name)).otherwise(ngx)

    ts = pick("ts")
    time = pl.coalesce(
        ts.str.replace_all(r" +", " ").str.to_datetime(
            "%b %d %H:%M:%S%.f %Y", strict=False, time_unit="ms", time_zone="UTC"
        ),
        ts.str.to_datetime("%Y/%m/%d %H:%M:%S", strict=False, time_unit="ms", time_zone="UTC"),
    )
    level = pick("level").str.to_lowercase()
    msg = pick("msg")
    client = pl.coalesce(pick("client"), msg.str.extract(r", client: ([^,\s]+)"))
    client_ip = client.str.extract(rf"^({IP}?)(?::\d+)?$")
    service = pl.when(apache).then(pl.lit("apache")).otherwise(pl.lit("nginx"))
    reason = first_reason(
        [
            (
                ts.is_null(),
                "not an Apache or nginx error log line: expected '[time] [level] message'",
            ),
            (time.is_null(), pl.format("bad timestamp {}", quoted(ts))),
        ]
    )
    events = {
        "time": time,
        "domain": pl.lit(Domain.SERVICE.value),
        "class_uid": pl.lit(int(EventClass.BASE)),
        "activity_id": pl.lit(0),
        "type_uid": pl.lit(0, dtype=pl.Int64),
        "severity_id": level.replace_strict(
            _LEVELS, default=int(Severity.INFORMATIONAL), return_dtype=pl.Int32
        ),
        "status_id": pl.lit(int(Status.UNKNOWN)),
        "message": msg,
        "src_ip": client_ip,
        "logsource_product": service,
        "logsource_service": service,
    }
    fields = {
        "level": level,
        "module": pick("module"),
        "pid": pick("pid"),
        "tid": pick("tid"),
        "client": client,
        "c-ip": client_ip,
        "error_code": msg.str.extract(r"^(AH\d{5}):"),
        "message": msg,
        "raw": pl.col("line"),
    }
    return finish(frame, reason, events, fields, source_file)


_PROXIFIER: Final = (
    r"^\[(?:(?P<year>\d{4})\.)?(?P<mon>\d\d)\.(?P<day>\d\d) (?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?)\] "
    r"(?P<prog>.+?)(?: \*64)? - (?P<dst>\S+?)(?::(?P<port>\d+))? (?P<msg>.*)$"
)
_SIZE: Final = r"(\d+) bytes(?: \([^)]*\))?"


def parse_proxifier(text: str, source_file: str, *, year: int | None = None) -> EventBatch:
    """Proxifier client logs: ``[MM.DD HH:MM:SS] program - host:port message``."""
    frame = lines_frame(text)
    parts = pl.col("line").str.extract_groups(_PROXIFIER)
    frame = frame.with_columns(
        [
            parts.struct.field(n).alias(f"_{n}")
            for n in ("year", "mon", "day", "clock", "prog", "dst", "port", "msg")
        ]
    )
    frame = frame.with_columns(
        yearless_time(frame, "_mon", "_day", "_clock", year).alias("_yearless")
    )
    time = (
        pl.when(pl.col("_year").is_not_null())
        .then(
            pl.format(
                "{}-{}-{} {}", pl.col("_year"), pl.col("_mon"), pl.col("_day"), pl.col("_clock")
            ).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="ms", time_zone="UTC")
        )
        .otherwise(pl.col("_yearless"))
    )
    msg = pl.col("_msg")
    is_open = msg.str.starts_with("open")
    is_close = msg.str.starts_with("close")
    is_error = msg.str.starts_with("error")
    sent = msg.str.extract(_SIZE + r" sent").cast(pl.Int64, strict=False)
    received = msg.str.extract(_SIZE + r" received").cast(pl.Int64, strict=False)
    proxy = msg.str.extract(r"(?:through|to) proxy (\S+)")
    activity = (
        pl.when(is_open)
        .then(pl.lit(1))
        .when(is_close)
        .then(pl.lit(2))
        .when(is_error)
        .then(pl.lit(4))
        .otherwise(pl.lit(99))
    )
    dst = pl.col("_dst")
    dst_ip = pl.when(dst.str.contains(rf"^{IP}$")).then(dst)
    reason = first_reason(
        [
            (
                pl.col("_mon").is_null(),
                "not a Proxifier line: expected '[MM.DD HH:MM:SS] program - host:port message'",
            ),
            (
                time.is_null(),
                pl.format(
                    "bad timestamp {}",
                    quoted(pl.format("{}.{} {}", pl.col("_mon"), pl.col("_day"), pl.col("_clock"))),
                ),
            ),
        ]
    )
    events = {
        "time": time,
        "domain": pl.lit(Domain.IT.value),
        "class_uid": pl.lit(int(EventClass.NETWORK_ACTIVITY)),
        "activity_id": activity,
        "type_uid": pl.lit(int(EventClass.NETWORK_ACTIVITY) * 100, dtype=pl.Int64) + activity,
        "severity_id": pl.when(is_error)
        .then(pl.lit(int(Severity.LOW)))
        .otherwise(pl.lit(int(Severity.INFORMATIONAL))),
        "status_id": pl.when(is_error)
        .then(pl.lit(int(Status.FAILURE)))
        .when(is_open | is_close)
        .then(pl.lit(int(Status.SUCCESS)))
        .otherwise(pl.lit(0)),
        "message": msg,
        "dst_ip": dst_ip,
        "dst_port": pl.col("_port").cast(pl.Int32, strict=False),
        "url": pl.format("{}:{}", dst, pl.col("_port").fill_null("")).str.strip_suffix(":"),
        "process": pl.col("_prog"),
        "bytes": pl.when(sent.is_not_null() | received.is_not_null()).then(
            sent.fill_null(0) + received.fill_null(0)
        ),
        "logsource_category": pl.lit("proxy"),
        "logsource_product": pl.lit("proxifier"),
    }
    fields = {
        "c-app": pl.col("_prog"),
        "cs-host": dst,
        "dst_ip": dst_ip,
        "dst_port": pl.col("_port"),
        "r-dns": dst,
        "proxy": proxy,
        "action": msg.str.extract(r"^(\w+)"),
        "cs-bytes": sent,
        "sc-bytes": received,
        "lifetime": msg.str.extract(r"lifetime (.+)$"),
        "message": msg,
        "raw": pl.col("line"),
    }
    return finish(frame, reason, events, fields, source_file)

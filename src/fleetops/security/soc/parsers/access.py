"""Web and API access logs: Apache/nginx combined and common format, and JSON lines.

Both become OCSF HTTP Activity (4002) events in the digital-services domain, with the
W3C / Sigma ``webserver`` field names as native fields (``c-ip``, ``cs-method``,
``cs-uri-stem``, ``cs-uri-query``, ``sc-status``, ``cs-user-agent``, ``cs-referer`` ...).
A line the combined regex rejects is dead-lettered with what is wrong with it (truncated
quote, bad status, bad timestamp), found by a few prefix regexes run on the rejects only.
"""

from __future__ import annotations

from typing import Final

import orjson
import polars as pl

from fleetops.core.ocsf import Domain, EventBatch, EventClass, Severity
from fleetops.security.soc.parsers.common import (
    dead_letters,
    finish,
    first_reason,
    lines_frame,
    parse_time,
    quoted,
    with_dead_letters,
)

_Q: Final = r'(?:[^"\\]|\\.)*'  # a quoted field's content; \" and \\ are escapes
_COMBINED: Final = (
    rf"^(?:(?P<vhost>\S+:\d+) )?(?P<ip>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<ts>[^\]]+)\] "
    rf'"(?P<req>{_Q})" (?P<status>\S+) (?P<bytes>\S+)'
    rf'(?: "(?P<ref>{_Q})" "(?P<ua>{_Q})"(?P<extra> .*)?)?\s*$'
)
# The common shape of _COMBINED's lines (no vhost, no escapes in the quoted fields,
# referer and user agent, nothing after): anchored and unambiguous, so the regex engine
# extracts its groups with a one-pass DFA, about 3x faster than _COMBINED. Where it
# matches, _COMBINED matches with the same groups unless it can read a vhost first.
_FAST: Final = (
    r'^(?P<ip>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<ts>[^\]]+)\] "(?P<req>[^"\\]*)" '
    r'(?P<status>\S+) (?P<bytes>\S+) "(?P<ref>[^"\\]*)" "(?P<ua>[^"\\]*)"$'
)
_MAYBE_VHOST: Final = r"^\S+:\d+ "
_REQUEST: Final = r"^(?P<method>[A-Za-z][A-Za-z_-]*) (?P<target>\S+)(?: (?P<proto>[A-Z]+/[\d.]+))?$"
_CLF_TIME: Final = "%d/%b/%Y:%H:%M:%S %z"
# Why a line failed, tested on rejected lines in this order (first match wins).
_DIAGNOSES: Final[list[tuple[str, str]]] = [
    (r"^(?:\S+:\d+ )?\S+ \S+ \S+ \[[^\]]*$", "truncated: no closing ']' for time"),
    (
        r"^(?:\S+:\d+ )?\S+ \S+ \S+ \[[^\]]+\] \"" + _Q + r"$",
        "truncated: no closing quote for request",
    ),
    (
        r"^(?:\S+:\d+ )?\S+ \S+ \S+ \[[^\]]+\] \"" + _Q + r"\"\s*$",
        "truncated: no status after request",
    ),
    (
        r"^(?:\S+:\d+ )?\S+ \S+ \S+ \[[^\]]+\] \"" + _Q + r"\" \S+ \S+ \"" + _Q + r"$",
        "truncated: no closing quote for referer",
    ),
    (
        r"^(?:\S+:\d+ )?\S+ \S+ \S+ \[[^\]]+\] \""
        + _Q
        + r"\" \S+ \S+ \""
        + _Q
        + r"\" \""
        + _Q
        + r"$",
        "truncated: no closing quote for user agent",
    ),
    (
        r"^(?:\S+:\d+ )?\S+ \S+ \S+ \[[^\]]+\] \"" + _Q + r"\" \S+ \S+ \"" + _Q + r"\"\s*$",
        "truncated: referer without user agent",
    ),
    (r"^(?:\S+:\d+ )?\S+ \S+ \S+ \[[^\]]+\] [^\"]", "no quoted request after the time"),
    (r"^(?:\S+:\d+ )?\S+ \S+ \S+ \[", "malformed: unexpected text after the request"),
]
_ACTIVITY: Final = {
    "CONNECT": 1,
    "DELETE": 2,
    "GET": 3,
    "HEAD": 4,
    "OPTIONS": 5,
    "POST": 6,
    "PUT": 7,
    "TRACE": 8,
    "PATCH": 9,
}


def _product(source_file: str) -> str | None:
    name = source_file.lower()
    if "nginx" in name:
        return "nginx"
    if "apache" in name or "httpd" in name:
        return "apache"
    return None


def _unescape(expr: pl.Expr) -> pl.Expr:
    # Apache writes \" and \\ inside quoted fields; nginx writes \x22. Keep the real text.
    return expr.str.replace_all('\\"', '"', literal=True).str.replace_all(
        r"\x22", '"', literal=True
    )


def _http(
    frame: pl.DataFrame,
    reason: pl.Expr,
    source_file: str,
    product: str | None,
    extra_fields: dict[str, pl.Expr] | None = None,
) -> EventBatch:
    """Events and fields from the normalised columns ``_ip _user _time _method _target
    _proto _status _bytes _ref _ua _host`` of ``frame``."""
    target = pl.col("_target")
    stem = target.str.splitn("?", 2).struct.field("field_0")  # = extract("^([^?]*)"), faster
    query = target.str.extract(r"\?(.*)$")
    status = pl.col("_status").cast(pl.Int32, strict=False)
    method = pl.col("_method").str.to_uppercase()
    activity = method.replace_strict(_ACTIVITY, default=99, return_dtype=pl.Int32).fill_null(0)
    user = pl.col("_user").replace("-", None).replace("", None)
    host = pl.col("_host").replace("-", None)
    events = {
        "time": pl.col("_time"),
        "domain": pl.lit(Domain.SERVICE.value),
        "class_uid": pl.lit(int(EventClass.HTTP_ACTIVITY)),
        "activity_id": activity,
        "type_uid": pl.lit(int(EventClass.HTTP_ACTIVITY) * 100, dtype=pl.Int64) + activity,
        "severity_id": pl.when(status >= 500)
        .then(pl.lit(int(Severity.LOW)))
        .otherwise(pl.lit(int(Severity.INFORMATIONAL))),
        "status_id": pl.when(status.is_null())
        .then(pl.lit(0))
        .when(status < 400)
        .then(pl.lit(1))
        .otherwise(pl.lit(2)),
        "message": pl.format("{} {} {}", method.fill_null("-"), target.fill_null("-"), status),
        "user": user,
        "host": host.str.replace(r":\d+$", ""),
        "src_ip": pl.col("_ip").replace("-", None),
        "dst_port": host.str.extract(r":(\d+)$").cast(pl.Int32, strict=False),
        "http_method": method,
        "url": target,
        "http_status": status,
        "user_agent": pl.col("_ua").replace("-", None),
        "bytes": pl.col("_bytes").cast(pl.Int64, strict=False),
        "logsource_category": pl.lit("webserver"),
        "logsource_product": pl.lit(product, dtype=pl.String()),
    }
    fields = {
        "c-ip": pl.col("_ip"),
        "cs-username": pl.col("_user"),
        "cs-method": pl.col("_method"),
        "cs-uri-stem": stem,
        "cs-uri-query": query,
        "cs-uri": target,
        "cs-version": pl.col("_proto"),
        "sc-status": pl.col("_status"),
        "sc-bytes": pl.col("_bytes"),
        "cs-referer": pl.col("_ref"),
        "cs-user-agent": pl.col("_ua"),
        "cs-host": pl.col("_host"),
        "request": pl.col("_request"),
        "raw": pl.col("line"),
        **(extra_fields or {}),
    }
    return finish(frame, reason, events, fields, source_file)


def _combined_parts(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` plus one String column per group of ``_COMBINED`` (null if no match),
    the quoted fields (``req``, ``ref``, ``ua``) unescaped.

    The fast regex takes the lines it can; the others (and those where ``_COMBINED``
    might read a vhost first) go through ``_COMBINED`` itself, so the groups are the same.
    Only those need unescaping: the fast regex takes no backslash in a quoted field.
    """
    line = pl.col("line")
    parts = frame.with_columns(line.str.extract_groups(_FAST).alias("_p")).unnest("_p")
    slow = parts.select(pl.col("ip").is_null() | line.str.contains(_MAYBE_VHOST)).to_series()
    nulls = [pl.lit(None, dtype=pl.String()).alias(name) for name in ("vhost", "extra")]
    if not slow.any():
        return parts.with_columns(nulls)
    rest = (
        frame.filter(slow)
        .with_columns(line.str.extract_groups(_COMBINED).alias("_p"))
        .unnest("_p")
        .with_columns(_unescape(pl.col(name)) for name in ("req", "ref", "ua"))
    )
    return pl.concat([parts.filter(~slow).with_columns(nulls), rest], how="diagonal").sort(
        "record_index"
    )


def parse_access_combined(text: str, source_file: str) -> EventBatch:
    """Apache/nginx combined or common format (optionally ``%v:%p`` first), one line each."""
    parts = _combined_parts(lines_frame(text))
    matched = parts["ip"].is_not_null()
    # Lines no regex takes are diagnosed apart: the diagnoses are costly and rare.
    rejects = parts.filter(~matched).select(
        pl.col("record_index"),
        pl.coalesce(
            [pl.when(pl.col("line").str.contains(rx)).then(pl.lit(why)) for rx, why in _DIAGNOSES]
            + [
                pl.lit(
                    "not an access log line: expected 'client ident user [time] \"request\" status bytes'"
                )
            ]
        ).alias("reason"),
        pl.col("line"),
    )
    frame = parts.filter(matched) if rejects.height else parts
    request = pl.col("req")
    req = request.str.extract_groups(_REQUEST)
    frame = frame.select(
        pl.col("record_index"),
        pl.col("line"),
        pl.col("ip").alias("_ip"),
        pl.col("user").alias("_user"),
        pl.col("ts").alias("_ts"),
        pl.col("ts")
        .str.to_datetime(_CLF_TIME, strict=False, time_unit="ms")
        .dt.convert_time_zone("UTC")
        .alias("_time"),
        request.alias("_request"),
        req.struct.field("method").alias("_method"),
        # A request line that is not "METHOD target [proto]" (TLS bytes sent to the HTTP
        # port, "-") is still a request the server logged: keep it whole as the target.
        pl.coalesce(req.struct.field("target"), request).alias("_target"),
        req.struct.field("proto").alias("_proto"),
        pl.col("status").alias("_status"),
        pl.col("bytes").alias("_bytes"),
        pl.col("ref").alias("_ref"),
        pl.col("ua").alias("_ua"),
        pl.col("vhost").alias("_host"),
    )
    reason = first_reason(
        [
            (
                ~pl.col("_status").str.contains(r"^(?:\d{3}|-)$"),
                pl.format("bad status {}", quoted(pl.col("_status"))),
            ),
            (
                ~pl.col("_bytes").str.contains(r"^(?:\d+|-)$"),
                pl.format("bad byte count {}", quoted(pl.col("_bytes"))),
            ),
            (pl.col("_time").is_null(), pl.format("bad timestamp {}", quoted(pl.col("_ts")))),
        ]
    )
    batch = _http(frame, reason, source_file, _product(source_file))
    return with_dead_letters(batch, dead_letters(source_file, rejects.rows()))


_JSON_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "_ts": ("time", "timestamp", "@timestamp", "time_iso8601", "time_local", "ts", "msec"),
    "_ip": ("client_ip", "remote_addr", "c-ip", "src_ip", "ip"),
    "_user": ("user", "remote_user", "cs-username", "username"),
    "_method": ("method", "request_method", "cs-method"),
    "_path": ("path", "uri", "cs-uri-stem", "request_uri", "url"),
    "_query": ("query", "query_string", "args", "cs-uri-query"),
    "_request": ("request",),
    "_proto": ("protocol", "server_protocol", "cs-version"),
    "_status": ("status", "status_code", "sc-status"),
    "_bytes": ("bytes", "body_bytes_sent", "bytes_sent", "sc-bytes", "size"),
    "_ref": ("referer", "http_referer", "referrer", "cs-referer"),
    "_ua": ("user_agent", "http_user_agent", "cs-user-agent", "ua"),
    "_host": ("host", "http_host", "server_name", "cs-host"),
    "_client_id": ("client_id", "api_client", "api_key_id"),
    "_duration": ("duration_ms", "request_time"),
    "_product": ("server", "product"),
}
"""Our access-json keys (first) and the aliases accepted for each (nginx, W3C names)."""


def _json_objects(
    frame: pl.DataFrame, source_file: str
) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """The lines that are JSON objects, and dead letters for the others."""
    good: list[bool] = []
    bad: list[tuple[int, str, str]] = []
    for index, line in zip(frame["record_index"], frame["line"], strict=True):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            good.append(False)
            bad.append((index, f"bad JSON: {str(exc).split(':')[0]}", line))
            continue
        ok = isinstance(value, dict)
        good.append(ok)
        if not ok:
            bad.append((index, f"not a JSON object: {type(value).__name__}", line))
    return frame.filter(pl.Series(good, dtype=pl.Boolean)), bad


def read_json_columns(lines: pl.Series, keys: dict[str, tuple[str, ...]]) -> pl.DataFrame:
    """One String column per target name of ``keys``: the first alias present per row.

    ``lines`` must all be JSON objects. Numbers become their text, nested values JSON.
    """
    names = sorted({alias for aliases in keys.values() for alias in aliases})
    if lines.is_empty():
        table = pl.DataFrame(schema=dict.fromkeys(names, pl.String()))
    else:
        table = pl.read_ndjson(
            ("\n".join(lines.to_list())).encode(),
            schema=dict.fromkeys(names, pl.String()),
        )
    return table.select(
        [pl.coalesce([pl.col(a) for a in aliases]).alias(name) for name, aliases in keys.items()]
    )


def parse_access_json(text: str, source_file: str) -> EventBatch:
    """JSON lines of HTTP/API requests with the keys of ``_JSON_KEYS`` (see the docs)."""
    frame, bad = _json_objects(lines_frame(text), source_file)
    columns = read_json_columns(frame["line"], _JSON_KEYS)
    frame = pl.concat([frame, columns], how="horizontal")
    request = pl.col("_request").str.extract_groups(_REQUEST)
    path = pl.coalesce(pl.col("_path"), request.struct.field("target"))
    query = pl.col("_query").str.strip_prefix("?").replace("", None)
    ts = pl.col("_ts")
    frame = frame.with_columns(
        pl.coalesce(
            parse_time(ts),
            ts.str.to_datetime(_CLF_TIME, strict=False, time_unit="ms").dt.convert_time_zone("UTC"),
        ).alias("_time"),
        pl.coalesce(pl.col("_method"), request.struct.field("method")).alias("_method"),
        pl.when(query.is_not_null() & ~path.str.contains("?", literal=True))
        .then(pl.format("{}?{}", path, query))
        .otherwise(path)
        .alias("_target"),
        pl.coalesce(pl.col("_proto"), request.struct.field("proto")).alias("_proto"),
    )
    reason = first_reason(
        [
            (ts.is_null(), "missing time (keys: time, timestamp, @timestamp, time_local)"),
            (pl.col("_time").is_null(), pl.format("bad timestamp {}", quoted(ts))),
            (
                pl.col("_target").is_null() & pl.col("_method").is_null(),
                "missing request (keys: method + path, or request)",
            ),
            (
                pl.col("_status").is_not_null() & ~pl.col("_status").str.contains(r"^\d{3}$"),
                pl.format("bad status {}", quoted(pl.col("_status"))),
            ),
        ]
    )
    products = frame["_product"].drop_nulls().unique().to_list()
    product = products[0].lower() if len(products) == 1 else _product(source_file)
    batch = _http(
        frame,
        reason,
        source_file,
        product,
        {"client_id": pl.col("_client_id"), "duration": pl.col("_duration")},
    )
    return with_dead_letters(batch, dead_letters(source_file, bad))


__all__ = ["parse_access_combined", "parse_access_json", "read_json_columns"]

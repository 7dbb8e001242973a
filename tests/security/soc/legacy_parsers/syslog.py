"""Syslog (RFC 3164, RFC 5424, ISO-stamped rsyslog files) and Linux ``auth.log``.

Headers are split by three regexes over the whole file (one per header style, the first
that matches a line wins); the program tag, then the authentication patterns (sshd,
PAM, sudo, su, login) run as vectorised regexes over the message column. Authentication
lines become OCSF Authentication (3002) events with user, source IP and status; cron
jobs Scheduled Job Activity, user creation Account Change, the rest Base events.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from fleetops.core.ocsf import Domain, EventBatch, EventClass, Severity, Status
from tests.security.soc.legacy_parsers.common import (
    IP,
    finish,
    first_reason,
    lines_frame,
    parse_time,
    quoted,
    yearless_time,
)

_RFC5424: Final = (
    r"^<(?P<pri>\d{1,3})>(?P<ver>\d{1,2}) (?P<ts>\S+) (?P<host>\S+) (?P<prog>\S+) "
    r"(?P<pid>\S+) (?P<msgid>\S+) (?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$"
)
_ISO: Final = (
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?"
    r"(?:Z|[+-]\d\d:?\d\d)?) (?P<host>\S+) (?P<rest>.*)$"
)
# Optional prefix: the Sandia/Loghub supercomputer layout "label epoch YYYY.MM.DD node".
_RFC3164: Final = (
    r"^(?:(?P<label>\S+) (?P<epoch>\d{9,11}) (?P<date>\d{4})\.\d\d\.\d\d (?P<node>\S+) )?"
    r"(?:<(?P<pri>\d{1,3})>)?(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) "
    r"(?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?) (?P<host>\S+) (?P<rest>.*)$"
)
_TAG: Final = (
    r"^\s*(?:--\s+)?(?P<prog>[^\s\[\]:()]+)(?:\((?P<sub>[^)]*)\))?(?:\[(?P<pid>[^\]]*)\])?:"
    r"(?: ?(?P<msg>.*))?$"
)

_SERVICES: Final[dict[str, str]] = {
    "sshd": "sshd",
    "sudo": "sudo",
    "cron": "cron",
    "crond": "cron",
    "anacron": "cron",
    "crontab": "cron",
    "vsftpd": "vsftpd",
    "clamd": "clamav",
    "freshclam": "clamav",
    "clamav": "clamav",
    "guacd": "guacamole",
    **{
        name: "auth"
        for name in (
            "su",
            "login",
            "passwd",
            "chpasswd",
            "useradd",
            "userdel",
            "usermod",
            "groupadd",
            "groupdel",
            "gpasswd",
            "chage",
            "gdm",
            "gdm-password",
            "systemd-logind",
            "polkitd",
            "pkexec",
            "klogind",
            "unix_chkpwd",
            "doas",
        )
    },
}
"""Sigma ``service`` by program name (lower case); anything else is ``syslog``."""

_ANY_IP: Final = rf"^{IP}$"

# (name, regex over the message, class, activity, status, capture group → column)
_PATTERNS: Final[list[tuple[str, str, EventClass, int, Status, dict[str, int]]]] = [
    (
        "accepted",
        rf"Accepted (\S+) for (\S+) from ({IP}|\S+) port (\d+)",
        EventClass.AUTHENTICATION, 1, Status.SUCCESS,
        {"auth_method": 1, "user": 2, "src_ip": 3, "src_port": 4},
    ),
    (
        "failed",
        rf"Failed (\S+) for (?:invalid user )?(.*?) from ({IP}|\S+) port (\d+)",
        EventClass.AUTHENTICATION, 1, Status.FAILURE,
        {"auth_method": 1, "user": 2, "src_ip": 3, "src_port": 4},
    ),
    (
        "max_attempts",
        rf"maximum authentication attempts exceeded for (?:invalid user )?(\S*) from ({IP}|\S+) port (\d+)",
        EventClass.AUTHENTICATION, 1, Status.FAILURE,
        {"user": 1, "src_ip": 2, "src_port": 3},
    ),
    (
        "invalid_user",
        rf"[Ii]nvalid user (.*?) from ({IP}|\S+)(?: port (\d+))?",
        EventClass.AUTHENTICATION, 1, Status.FAILURE,
        {"user": 1, "src_ip": 2, "src_port": 3},
    ),
    (
        "pam_failure",
        r"authentication failures?; logname=\S* uid=\d* euid=\d* tty=\S* ruser=\S* rhost=(\S*)(?:\s+user=(\S+))?",
        EventClass.AUTHENTICATION, 1, Status.FAILURE,
        {"src_ip": 1, "user": 2},
    ),
    (
        "too_many",
        r"Too many authentication failures for (?:invalid user )?(\S+)",
        EventClass.AUTHENTICATION, 1, Status.FAILURE,
        {"user": 1},
    ),
    (
        "session_opened",
        r"session opened for user ([^\s(]+)(?:\(uid=\d+\))? by",
        EventClass.AUTHENTICATION, 1, Status.SUCCESS,
        {"user": 1},
    ),
    (
        "session_closed",
        r"session closed for user ([^\s(]+)",
        EventClass.AUTHENTICATION, 2, Status.SUCCESS,
        {"user": 1},
    ),
    (
        "sudo_denied",
        r"^\s*(\S+) : (?:[^;]*(?:NOT in sudoers|incorrect password|not allowed|authentication failure)[^;]*) ; TTY=\S+ ; PWD=\S+ ; USER=(\S+) ; (?:.*?; )?COMMAND=(.*)$",
        EventClass.AUTHENTICATION, 1, Status.FAILURE,
        {"user": 1, "target_user": 2, "command": 3},
    ),
    (
        "sudo",
        r"^\s*(\S+) : (?:.*? ; )?TTY=\S+ ; PWD=\S+ ; USER=(\S+) ; (?:.*?; )?COMMAND=(.*)$",
        EventClass.AUTHENTICATION, 1, Status.SUCCESS,
        {"user": 1, "target_user": 2, "command": 3},
    ),
    (
        "su_failed",
        r"(?:FAILED SU|FAILED su for (\S+) by|pam_authenticate: Authentication failure)(?: \(to (\S+)\))?\s*(\S+)?",
        EventClass.AUTHENTICATION, 1, Status.FAILURE,
        {"target_user": 2, "user": 3},
    ),
    (
        "su",
        r"(?:Successful su for (\S+) by (\S+)|\(to (\S+)\) (\S+) on)",
        EventClass.AUTHENTICATION, 1, Status.SUCCESS,
        {"target_user": 1, "user": 2},
    ),
    (
        "login_failed",
        r"FAILED LOGIN (?:\(?\d+\)? )?(?:ON (\S+) )?FROM (\S+) FOR (\S+),",
        EventClass.AUTHENTICATION, 1, Status.FAILURE,
        {"src_ip": 2, "user": 3},
    ),
    (
        "root_login",
        r"ROOT LOGIN\s+ON\s+(\S+)(?: FROM (\S+))?",
        EventClass.AUTHENTICATION, 1, Status.SUCCESS,
        {"src_ip": 2},
    ),
    (
        "kerberos_failed",
        rf"Authentication failed from ({IP})",
        EventClass.AUTHENTICATION, 1, Status.FAILURE,
        {"src_ip": 1},
    ),
    (
        "ftp_login",
        rf"(ANONYMOUS )?FTP LOGIN FROM ({IP})[^,]*,\s*\(?([^\s)]+)",
        EventClass.AUTHENTICATION, 1, Status.SUCCESS,
        {"src_ip": 2, "user": 3},
    ),
    (
        "cron_cmd",
        r"^\(([^)]+)\) CMD \((.*)\)\s*$",
        EventClass.SCHEDULED_JOB_ACTIVITY, 99, Status.UNKNOWN,
        {"user": 1, "command": 2},
    ),
    (
        "new_user",
        r"new user: name=([^,\s]+)",
        EventClass.ACCOUNT_CHANGE, 1, Status.SUCCESS,
        {"user": 1},
    ),
]  # fmt: skip
_CAPTURED: Final = ("user", "target_user", "src_ip", "src_port", "auth_method", "command")
# Syslog severity (0 emergency .. 7 debug) → OCSF severity_id.
_SEVERITY: Final = {0: 6, 1: 5, 2: 5, 3: 3, 4: 2, 5: 1, 6: 1, 7: 1}


def parse_syslog(text: str, source_file: str, *, year: int | None = None) -> EventBatch:
    """Every line of a syslog file as an event or a dead letter (see module doc).

    ``year`` is the year of the first record of year-less RFC 3164 stamps (default:
    ``$FLEETOPS_LOG_YEAR``, else the year that puts the last record not in the future).
    """
    frame = lines_frame(text)
    line = pl.col("line")
    a = line.str.extract_groups(_RFC5424)
    b = line.str.extract_groups(_ISO)
    c = line.str.extract_groups(_RFC3164)
    frame = frame.with_columns(
        pl.when(a.struct.field("ver").is_not_null())
        .then(pl.lit("5424"))
        .when(b.struct.field("ts").is_not_null())
        .then(pl.lit("iso"))
        .when(c.struct.field("mon").is_not_null())
        .then(pl.lit("3164"))
        .alias("_style"),
        a.alias("_a"),
        b.alias("_b"),
        c.alias("_c"),
    )
    style = pl.col("_style")

    def pick(name: str) -> pl.Expr:
        options = [
            pl.when(style == key).then(pl.col(col).struct.field(name))
            for key, col, names in (
                ("5424", "_a", ("pri", "ts", "host", "prog", "pid", "msgid", "sd", "msg")),
                ("iso", "_b", ("pri", "ts", "host", "rest")),
                ("3164", "_c", ("pri", "host", "rest", "mon", "day", "clock", "date", "node")),
            )
            if name in names
        ]
        return pl.coalesce(options) if options else pl.lit(None, dtype=pl.String())

    frame = frame.with_columns(
        pick("pri").cast(pl.Int32, strict=False).alias("_pri"),
        pick("ts").alias("_ts"),
        pick("host").alias("_host"),
        pick("rest").alias("_rest"),
        pick("mon").alias("_mon"),
        pick("day").alias("_day"),
        pick("clock").alias("_clock"),
        pick("date").alias("_year"),
        pick("node").alias("_node"),
        pick("prog").alias("_prog5424"),
        pick("pid").alias("_pid5424"),
        pick("msgid").alias("_msgid"),
        pick("sd").alias("_sd"),
        pick("msg").alias("_msg5424"),
    )
    yearless = yearless_time(frame, "_mon", "_day", "_clock", year)
    tagged = pl.col("_rest").str.extract_groups(_TAG)
    frame = frame.with_columns(
        yearless.alias("_yearless"),
        tagged.struct.field("prog").alias("_tprog"),
        tagged.struct.field("sub").alias("_tsub"),
        tagged.struct.field("pid").alias("_tpid"),
        tagged.struct.field("msg").alias("_tmsg"),
    ).with_columns(
        pl.when(style == "5424")
        .then(parse_time(pl.col("_ts")))
        .when(style == "iso")
        .then(parse_time(pl.col("_ts").str.replace(",", ".")))
        .when(pl.col("_year").is_not_null())
        .then(
            pl.format(
                "{}-{}-{} {}",
                pl.col("_year"),
                pl.col("_mon"),
                pl.col("_day").str.zfill(2),
                pl.col("_clock"),
            ).str.to_datetime("%Y-%b-%d %H:%M:%S%.f", strict=False, time_unit="ms", time_zone="UTC")
        )
        .otherwise(pl.col("_yearless"))
        .alias("_time"),
        pl.when(style == "5424")
        .then(pl.col("_prog5424").replace("-", None))
        .otherwise(
            pl.coalesce(
                pl.col("_tprog"),
                pl.col("_rest").str.extract(r"^\s*(?:--\s+)?([A-Za-z][\w.-]*)"),
            )
        )
        .alias("_prog"),
        pl.when(style == "5424")
        .then(pl.col("_pid5424").replace("-", None))
        .otherwise(pl.col("_tpid"))
        .alias("_pid"),
        pl.when(style == "5424")
        .then(pl.col("_msg5424").fill_null("").str.strip_prefix("\ufeff"))
        .otherwise(
            pl.when(pl.col("_tprog").is_not_null())
            .then(pl.col("_tmsg").fill_null(""))
            .otherwise(pl.col("_rest").str.strip_chars())
        )
        .alias("_msg"),
    )
    base = pl.col("_prog").str.split("/").list.last().str.to_lowercase()
    msg = pl.col("_msg")
    # Each regex is wrapped in one more group: group "1" is then non-null exactly when the
    # pattern matched, even where all its own groups are optional.
    matches = [msg.str.extract_groups(f"({regex})") for _, regex, *_ in _PATTERNS]
    kind = pl.coalesce(
        [pl.when(m.struct.field("1").is_not_null()).then(pl.lit(i)) for i, m in enumerate(matches)]
    )
    frame = frame.with_columns(kind.alias("_kind"), base.alias("_base"))
    captured = {}
    for column in _CAPTURED:
        options = [
            pl.when(pl.col("_kind") == i).then(m.struct.field(str(groups[column] + 1)))
            for i, (m, (_, _, _, _, _, groups)) in enumerate(zip(matches, _PATTERNS, strict=True))
            if column in groups
        ]
        captured[column] = pl.coalesce(options) if options else pl.lit(None, dtype=pl.String())
    frame = frame.with_columns(
        [expr.replace("", None).alias(f"_{name}") for name, expr in captured.items()]
    )
    # An IP anywhere "from X", "rhost=X" or "[X]" for lines that no pattern claims.
    loose_ip = msg.str.extract(rf"(?:\bfrom |rhost=|\[)({IP})\b")
    ip_candidate = pl.coalesce(pl.col("_src_ip"), loose_ip)
    src_ip = pl.when(ip_candidate.str.contains(rf"^{IP}$")).then(ip_candidate)
    kind_col = pl.col("_kind")

    def by_kind(values: list[int]) -> pl.Expr:
        return kind_col.replace_strict(
            list(range(len(values))), values, default=None, return_dtype=pl.Int32
        )

    class_uid = pl.coalesce(by_kind([int(p[2]) for p in _PATTERNS]), pl.lit(0))
    activity = pl.coalesce(by_kind([p[3] for p in _PATTERNS]), pl.lit(0))
    status = pl.coalesce(by_kind([int(p[4]) for p in _PATTERNS]), pl.lit(0))
    pri = pl.col("_pri")
    severity = (
        pl.when(pri.is_not_null())
        .then(pri.mod(8).replace_strict(_SEVERITY, default=1, return_dtype=pl.Int32))
        .when(status == int(Status.FAILURE))
        .then(pl.lit(int(Severity.LOW)))
        .otherwise(pl.lit(int(Severity.INFORMATIONAL)))
    )
    time_text = pl.coalesce(
        pl.col("_ts"), pl.format("{} {} {}", pl.col("_mon"), pl.col("_day"), pl.col("_clock"))
    )
    reason = first_reason(
        [
            (style.is_null(), "not syslog: no RFC 3164 or RFC 5424 header"),
            ((pri > 191).fill_null(False), pl.format("bad priority <{}>", pri)),
            (pl.col("_time").is_null(), pl.format("bad timestamp {}", quoted(time_text))),
        ]
    )
    host = pl.coalesce(pl.col("_node"), pl.col("_host").str.split("/").list.first())
    events = {
        "time": pl.col("_time"),
        "domain": pl.lit(Domain.IT.value),
        "class_uid": class_uid,
        "activity_id": activity,
        "type_uid": class_uid.cast(pl.Int64) * 100 + activity,
        "severity_id": severity,
        "status_id": status,
        "message": msg,
        "user": pl.col("_user"),
        "host": host.replace("-", None),
        "src_ip": src_ip,
        "src_port": pl.col("_src_port").cast(pl.Int32, strict=False),
        "process": pl.col("_prog"),
        "command_line": pl.col("_command"),
        "logsource_product": pl.lit("linux"),
        "logsource_service": base.replace_strict(_SERVICES, default="syslog"),
    }
    fields = {
        "host": pl.col("_host"),
        "program": pl.col("_prog"),
        "pid": pl.col("_pid"),
        "facility": (pri // 8),
        "severity": pri.mod(8),
        "msgid": pl.col("_msgid").replace("-", None),
        "structured_data": pl.col("_sd").replace("-", None),
        "message": msg,
        "raw": pl.col("line"),
        "user": pl.col("_user"),
        "target_user": pl.col("_target_user"),
        "src_ip": src_ip,
        "src_port": pl.col("_src_port"),
        "rhost": pl.col("_src_ip"),
        "auth_method": pl.col("_auth_method"),
        "command": pl.col("_command"),
        "event": by_kind_names(kind_col),
    }
    return finish(frame, reason, events, fields, source_file)


def by_kind_names(kind: pl.Expr) -> pl.Expr:
    """The pattern name (``accepted``, ``failed``, ``sudo`` ...) of each row's match."""
    return kind.replace_strict(
        list(range(len(_PATTERNS))), [p[0] for p in _PATTERNS], default=None, return_dtype=pl.String
    )

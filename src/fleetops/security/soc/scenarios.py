"""Benign traffic of the four domains with four labelled attacks, reproducible by seed.

:func:`generate` simulates a week (by default) of what the cyber defence centre reads — as
the raw lines of the formats its parsers read, one file per source:

========================  ==================  ============================================
file                      format              what
========================  ==================  ============================================
``auth.log``              ``syslog``          OpenSSH on IT servers (RFC 5424 lines)
``ota_access.log``        ``access-combined`` the OTA/update back end (consoles, vehicles)
``services_access.log``   ``access-combined`` the customer digital-services API
``ot.jsonl``              ``ot-json``         Modbus/OPC UA operations on production PLCs
``vehicles.jsonl``        ``vehicle-json``    IDS findings, DTCs, OTA installs, ECU software
========================  ==================  ============================================

The first ``history_days`` are benign only (what the behavioural models learn from); the
attacks happen after ``history_end``:

``ota_supply_chain``
    a phished release manager's password used from a new IP at night on the OTA back end,
    admin API calls, a malicious update campaign, IDS alerts on the vehicles that took it;
``plc_tampering``
    an unknown host on the OT network reads, stops, re-programs and drives a PLC;
``credential_stuffing``
    a handful of IPs try thousands of accounts on the services API, then scrape the
    accounts that worked;
``telematics_worm``
    a telematics unit gets unauthorised firmware, calls a C2 server, and the same happens
    to more vehicles over the following hours.

Ground truth (:meth:`ScenarioData.truth`) names the scenario of every attack record by file
and 1-based line number. :meth:`ScenarioData.events` gives the same records already
normalised (the OCSF columns the parsers produce), so analytics can be tested without them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl

from fleetops.core.ocsf import EventClass, Status, conform_events

SCENARIOS: Final[tuple[str, ...]] = (
    "ota_supply_chain",
    "plc_tampering",
    "credential_stuffing",
    "telematics_worm",
)

FILE_FORMATS: Final[dict[str, str]] = {
    "auth.log": "syslog",
    "ota_access.log": "access-combined",
    "services_access.log": "access-combined",
    "ot.jsonl": "ot-json",
    "vehicles.jsonl": "vehicle-json",
}

_SHARES: Final[dict[str, float]] = {
    "auth.log": 0.12,
    "ota_access.log": 0.10,
    "services_access.log": 0.33,
    "ot.jsonl": 0.30,
    "vehicles.jsonl": 0.15,
}

_HOUR_WEIGHTS = np.array(
    [0.15, 0.1, 0.08, 0.08, 0.1, 0.3, 1, 3, 6, 8, 8, 7, 5, 7, 8, 7, 6, 4, 2, 1, 0.7, 0.5, 0.3, 0.2]
)
_EVENING_WEIGHTS = np.array(  # consumers: evenings and weekends too
    [0.5, 0.3, 0.2, 0.2, 0.2, 0.5, 1.5, 3, 4, 4, 4, 4, 5, 4, 4, 4, 5, 6, 7, 7, 6, 4, 2, 1]
)
_FIRST = (
    "anna",
    "ben",
    "clara",
    "david",
    "eva",
    "felix",
    "greta",
    "hugo",
    "ida",
    "jonas",
    "julia",
    "karl",
    "lena",
    "max",
    "nina",
    "oskar",
    "paula",
    "rafael",
    "sara",
    "tim",
)
_LAST = ("berger", "fischer", "hahn", "klein", "lang", "meyer", "neumann", "roth")
_SERVERS = (
    "bastion01",
    "build01",
    "build02",
    "build03",
    "git01",
    "ci01",
    "db01",
    "ota-backend01",
    "ota-backend02",
    "monitor01",
    "jump01",
    "vault01",
)
_ECUS = ("BMS", "VCU", "ADAS", "GW", "TCU", "HVAC", "BCM")
_BENIGN_CAMPAIGNS = (
    ("CMP-2026-0101", "GW", "gw-5.2.0"),
    ("CMP-2026-0102", "TCU", "tcu-7.0.3"),
    ("CMP-2026-0103", "ADAS", "adas-3.1.4"),
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# the attacks' actors
EVIL_CAMPAIGN: Final = "CMP-2026-0457"
EVIL_VERSION: Final = "gw-5.3.1-hotfix"
PHISHED_USER: Final = "julia.berger"
PHISH_IP: Final = "203.0.113.45"
OT_INTRUDER: Final = "10.50.1.66"
TAMPERED_PLC: Final = "plc-line2-03"
STUFFING_IPS: Final = tuple(f"185.100.87.{i}" for i in range(10, 16))
C2_IP: Final = "185.220.101.47"
WORM_VERSION: Final = "tcu-7.1.0-m"


@dataclass
class ScenarioData:
    """The generated sources: per file, a frame with ``line``, ``scenario`` ("" = benign)
    and the normalised event columns of each record, in file order."""

    files: dict[str, pl.DataFrame]
    seed: int
    start: datetime
    history_end: datetime
    formats: dict[str, str] = field(default_factory=lambda: dict(FILE_FORMATS))

    @property
    def benign_events(self) -> int:
        return sum(int((f["scenario"] == "").sum()) for f in self.files.values())

    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write every source file under ``folder``; returns name → path."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, frame in self.files.items():
            path = root / name
            path.write_text("\n".join(frame["line"].to_list()) + "\n", encoding="utf-8")
            paths[name] = path
        return paths

    def split(self) -> tuple[ScenarioData, ScenarioData]:
        """(history, live): the records before :attr:`history_end` and the rest, as files of
        their own (line numbers, and so :meth:`truth`, refer to each part's files)."""
        before = {
            n: f.filter(pl.col("time") < _ms(self.history_end)) for n, f in self.files.items()
        }
        after = {
            n: f.filter(pl.col("time") >= _ms(self.history_end)) for n, f in self.files.items()
        }
        return (
            ScenarioData(before, self.seed, self.start, self.history_end),
            ScenarioData(after, self.seed, self.start, self.history_end),
        )

    def truth(self, paths: dict[str, Path] | None = None) -> pl.DataFrame:
        """``source_file`` (file name, or its path in ``paths`` as :meth:`write` returned
        them), ``record_index`` (1-based line) and ``scenario``."""
        parts = [
            frame.with_row_index("record_index", offset=1)
            .filter(pl.col("scenario") != "")
            .select(
                pl.lit(str(paths[name]) if paths else name).alias("source_file"),
                pl.col("record_index").cast(pl.Int64),
                "scenario",
            )
            for name, frame in self.files.items()
        ]
        return pl.concat(parts)

    def events(self, *, scenario_column: bool = False) -> pl.DataFrame:
        """All records as normalised events (``EVENT_SCHEMA``), ``source_file`` = file name."""
        parts = []
        for name, frame in self.files.items():
            framed = frame.with_row_index("record_index", offset=1).with_columns(
                pl.lit(name).alias("source_file"),
                pl.col("record_index").cast(pl.Int64),
                pl.from_epoch("time", time_unit="ms").dt.replace_time_zone("UTC"),
                pl.col("line").alias("raw"),
            )
            events = conform_events(framed)
            if scenario_column:
                events = events.with_columns(framed["scenario"])
            parts.append(events)
        return pl.concat(parts, how="vertical").sort("time", maintain_order=True)


# -- helpers --------------------------------------------------------------------------------


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _times(
    rng: np.random.Generator, n: int, start_ms: int, days: int, weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """``n`` sorted epoch-ms times over ``days`` days following an hour-of-day profile."""
    day_w = np.array([1.0 if (d % 7) < 5 else 0.35 for d in range(days)])
    day = rng.choice(days, size=n, p=day_w / day_w.sum())
    hour = rng.choice(24, size=n, p=weights / weights.sum())
    within = rng.integers(0, 3_600_000, size=n)
    return np.sort(start_ms + day * 86_400_000 + hour * 3_600_000 + within).astype(np.int64)


def _vin(serial: int) -> str:
    return f"WFLEV1{serial:011d}"


def _pick(rng: np.random.Generator, values: tuple[str, ...] | list[str], n: int) -> list[str]:
    idx = rng.integers(0, len(values), size=n)
    return [values[i] for i in idx]


def _iso(ms: pl.Expr) -> pl.Expr:
    return pl.from_epoch(ms, time_unit="ms").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")


def _clf_time(ms: pl.Expr) -> pl.Expr:
    ts = pl.from_epoch(ms, time_unit="ms")
    month = ts.dt.month().replace_strict(list(range(1, 13)), list(_MONTHS), return_dtype=pl.String)
    return pl.format(
        "{}/{}/{}:{} +0000",
        ts.dt.strftime("%d"),
        month,
        ts.dt.strftime("%Y"),
        ts.dt.strftime("%H:%M:%S"),
    )


def _frame(rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, strict=False)


# -- IT: sshd on servers ---------------------------------------------------------------------


@dataclass(frozen=True)
class _People:
    users: list[str]
    ips: list[str]
    hosts: list[tuple[str, ...]]
    release_managers: list[int]


def _people(rng: np.random.Generator) -> _People:
    users = [f"{f}.{last}" for last in _LAST for f in _FIRST][:120]
    ips = [f"10.20.{i // 60}.{10 + i % 60}" for i in range(len(users))]
    hosts = [
        tuple(sorted({_SERVERS[j] for j in rng.integers(0, len(_SERVERS), size=3)})) for _ in users
    ]
    managers = [users.index(PHISHED_USER), *range(3, 10)]
    for m in managers:
        hosts[m] = tuple(sorted({*hosts[m], "ota-backend01", "ota-backend02"}))
    return _People(users, ips, hosts, managers)


def _auth_rows(
    rng: np.random.Generator, n: int, start_ms: int, days: int, people: _People
) -> pl.DataFrame:
    t = _times(rng, n, start_ms, days, _HOUR_WEIGHTS)
    who = rng.integers(0, len(people.users), size=n)
    kind = rng.choice(5, size=n, p=[0.5, 0.2, 0.2, 0.06, 0.04])  # pk, pw, session, fail, scan
    users, ips, hosts, messages, status, cls = [], [], [], [], [], []
    ports = rng.integers(32768, 61000, size=n)
    scan_pool = [f"{a}.{b}.{c}.{d}" for a, b, c, d in rng.integers(1, 223, size=(3000, 4))]
    scan_users = ("admin", "test", "oracle", "ubuntu", "pi", "postgres", "git", "user")
    for i in range(n):
        u, k, port = int(who[i]), int(kind[i]), int(ports[i])
        host_choices = people.hosts[u]
        host = host_choices[int(rng.integers(0, len(host_choices)))]
        user, ip = people.users[u], people.ips[u]
        if k == 0:
            msg = f"Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:{rng.integers(1 << 40):x}"
            st, c = Status.SUCCESS, EventClass.AUTHENTICATION
        elif k == 1:
            msg = f"Accepted password for {user} from {ip} port {port} ssh2"
            st, c = Status.SUCCESS, EventClass.AUTHENTICATION
        elif k == 2:
            msg = f"pam_unix(sshd:session): session closed for user {user}"
            st, c, ip = Status.UNKNOWN, EventClass.BASE, ""
        elif k == 3:
            msg = f"Failed password for {user} from {ip} port {port} ssh2"
            st, c = Status.FAILURE, EventClass.AUTHENTICATION
        else:
            host, ip = "bastion01", scan_pool[int(rng.integers(0, len(scan_pool)))]
            user = scan_users[int(rng.integers(0, len(scan_users)))]
            msg = f"Failed password for invalid user {user} from {ip} port {port} ssh2"
            st, c = Status.FAILURE, EventClass.AUTHENTICATION
        users.append(user)
        ips.append(ip or None)
        hosts.append(host)
        messages.append(msg)
        status.append(int(st))
        cls.append(int(c))
    return _frame(
        {
            "time": t,
            "user": users,
            "src_ip": ips,
            "host": hosts,
            "message": messages,
            "status_id": status,
            "class_uid": cls,
            "scenario": [""] * n,
        }
    )


def _render_auth(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    pids = pl.Series("pid", rng.integers(1000, 65000, size=frame.height))
    return frame.with_columns(
        domain=pl.lit("it"),
        logsource_product=pl.lit("linux"),
        logsource_service=pl.lit("sshd"),
        line=pl.format("<38>1 {} {} sshd {} - - {}", _iso(pl.col("time")), "host", pids, "message"),
    )


# -- web: the OTA back end and the services API ----------------------------------------------


def _combined(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.with_columns(pl.col("time") // 1000 * 1000).drop("host", strict=False)
    return frame.with_columns(
        domain=pl.lit("service"),
        class_uid=pl.lit(int(EventClass.HTTP_ACTIVITY)),
        logsource_category=pl.lit("webserver"),
        line=pl.format(
            '{} - {} [{}] "{} {} HTTP/1.1" {} {} "-" "{}"',
            "src_ip",
            pl.col("user").fill_null("-"),
            _clf_time(pl.col("time")),
            "http_method",
            "url",
            "http_status",
            "bytes",
            "user_agent",
        ),
    )


def _ota_rows(
    rng: np.random.Generator,
    n: int,
    start_ms: int,
    days: int,
    people: _People,
    vins: list[str],
    vehicle_ips: list[str],
) -> pl.DataFrame:
    n_console = n // 4
    n_poll = n - n_console
    # vehicles polling for their update manifest: steady, all day
    tp = np.sort(start_ms + rng.integers(0, days * 86_400_000, size=n_poll)).astype(np.int64)
    v = rng.integers(0, len(vins), size=n_poll)
    poll = _frame(
        {
            "time": tp,
            "src_ip": [vehicle_ips[i] for i in v],
            "user": [None] * n_poll,
            "http_method": ["GET"] * n_poll,
            "url": [f"/api/v1/updates/{vins[i]}/manifest" for i in v],
            "http_status": rng.choice([200, 304], size=n_poll, p=[0.3, 0.7]),
            "bytes": rng.integers(80, 2400, size=n_poll),
            "user_agent": ["fleetops-tcu/7.0"] * n_poll,
        }
    )
    # release managers on the console
    tc = _times(rng, n_console, start_ms, days, _HOUR_WEIGHTS)
    m = rng.choice(people.release_managers, size=n_console)
    camp = [c for c, _, _ in _BENIGN_CAMPAIGNS]
    urls, methods, status = [], [], []
    for _ in range(n_console):
        r = rng.random()
        c = camp[int(rng.integers(0, len(camp)))]
        if r < 0.08:
            urls.append("/api/v1/auth/login")
            methods.append("POST")
        elif r < 0.45:
            urls.append("/api/v1/campaigns")
            methods.append("GET")
        elif r < 0.8:
            urls.append(f"/api/v1/campaigns/{c}/status")
            methods.append("GET")
        elif r < 0.95:
            urls.append(f"/api/v1/vehicles/{vins[int(rng.integers(0, len(vins)))]}/software")
            methods.append("GET")
        elif r < 0.98:
            urls.append(f"/api/v1/admin/campaigns/{c}/approve")
            methods.append("POST")
        else:
            urls.append("/api/v1/admin/campaigns")
            methods.append("POST")
        status.append(201 if methods[-1] == "POST" and "admin" in urls[-1] else 200)
    console_rows = _frame(
        {
            "time": tc,
            "src_ip": [people.ips[i] for i in m],
            "user": [people.users[i] for i in m],
            "http_method": methods,
            "url": urls,
            "http_status": status,
            "bytes": rng.integers(200, 9000, size=n_console),
            "user_agent": ["Mozilla/5.0 (X11; Linux x86_64) ota-console/2.4"] * n_console,
        }
    )
    return pl.concat([poll, console_rows], how="diagonal_relaxed").with_columns(
        scenario=pl.lit(""), host=pl.lit("ota-backend01")
    )


def _services_rows(
    rng: np.random.Generator, n: int, start_ms: int, days: int, vins: list[str]
) -> pl.DataFrame:
    n_clients = max(50, min(20_000, n // 40))
    clients = [f"c{100000 + i:07d}" for i in range(n_clients)]
    client_ip = [f"{a}.{b}.{c}.{d}" for a, b, c, d in rng.integers(1, 223, size=(n_clients, 4))]
    client_vin = [vins[i % len(vins)] for i in range(n_clients)]
    agents = ("FleetApp/5.1 (iOS 17.4)", "FleetApp/5.1 (Android 14)", "FleetApp/5.0 (iOS 16.7)")
    client_agent = _pick(rng, agents, n_clients)
    t = _times(rng, n, start_ms, days, _EVENING_WEIGHTS)
    c = rng.integers(0, n_clients, size=n)
    r = rng.random(size=n)
    urls, methods, status, users = [], [], [], []
    for i in range(n):
        k, ri = int(c[i]), float(r[i])
        vin = client_vin[k]
        users.append(clients[k])
        if ri < 0.1:
            methods.append("POST")
            urls.append("/api/v1/login")
            status.append(401 if rng.random() < 0.04 else 200)
            continue
        methods.append("GET" if ri < 0.93 else "POST")
        if ri < 0.4:
            urls.append(f"/api/v1/vehicles/{vin}/status")
        elif ri < 0.55:
            urls.append(f"/api/v1/vehicles/{vin}/trips?page={1 + int(rng.integers(0, 3))}")
        elif ri < 0.7:
            urls.append(f"/api/v1/vehicles/{vin}/charging")
        elif ri < 0.8:
            urls.append("/api/v1/account/profile")
        elif ri < 0.93:
            urls.append(f"/api/v1/vehicles/{vin}/location")
        else:
            urls.append(f"/api/v1/vehicles/{vin}/climate")
        status.append(200 if rng.random() > 0.01 else 404)
    return _frame(
        {
            "time": t,
            "src_ip": [client_ip[i] for i in c],
            "user": users,
            "http_method": methods,
            "url": urls,
            "http_status": status,
            "bytes": rng.integers(150, 6000, size=n),
            "user_agent": [client_agent[i] for i in c],
            "scenario": [""] * n,
            "host": ["api.fleetops.example"] * n,
        }
    )


# -- OT: PLCs on production lines --------------------------------------------------------------

_OT_FUNCTIONS: Final[dict[str, int]] = {
    "read_coils": 1,
    "read_discrete_inputs": 2,
    "read_holding_registers": 3,
    "read_input_registers": 4,
    "write_single_coil": 5,
    "write_single_register": 6,
    "write_multiple_registers": 16,
    "read_device_identification": 43,
    "program_upload": 90,
    "program_download": 90,
    "plc_stop": 90,
    "plc_run": 90,
}
_PLCS: Final = tuple(f"plc-line{line}-{k:02d}" for line in range(1, 5) for k in range(1, 6))
SCADA_MASTER: Final = "10.10.0.10"  # the control room: 10.10.0.0/24
ENGINEERING_WS: Final = "10.10.0.5"
MES_SERVER: Final = "10.10.0.30"


def _plc_ip(device: str) -> str:
    line, k = int(device[8]), int(device[-2:])
    return f"10.50.{10 + line}.{10 + k}"


def _ot_rows(
    rng: np.random.Generator, n: int, start_ms: int, days: int, history_days: int
) -> pl.DataFrame:
    n_poll = int(n * 0.8)
    n_mes = int(n * 0.12)
    n_hmi = n - n_poll - n_mes - 6
    parts = []
    # the SCADA master polls every PLC all day
    tp = np.sort(start_ms + rng.integers(0, days * 86_400_000, size=n_poll))
    ops = rng.choice(["read_holding_registers", "read_coils", "read_discrete_inputs"], size=n_poll)
    parts.append(
        {
            "time": tp,
            "src_ip": [SCADA_MASTER] * n_poll,
            "device": _pick(rng, _PLCS, n_poll),
            "ot_operation": ops.tolist(),
            "protocol": ["modbus"] * n_poll,
        }
    )
    # the MES reads process values over OPC UA
    tm = np.sort(start_ms + rng.integers(0, days * 86_400_000, size=n_mes))
    parts.append(
        {
            "time": tm,
            "src_ip": [MES_SERVER] * n_mes,
            "device": _pick(rng, _PLCS, n_mes),
            "ot_operation": ["opcua_read"] * n_mes,
            "protocol": ["opcua"] * n_mes,
        }
    )
    # operators on each line's HMI change setpoints in shifts
    th = _times(rng, n_hmi, start_ms, days, _HOUR_WEIGHTS)
    dev = _pick(rng, _PLCS, n_hmi)
    parts.append(
        {
            "time": th,
            "src_ip": [f"10.10.0.{20 + int(d[8])}" for d in dev],
            "device": dev,
            "ot_operation": rng.choice(
                ["write_single_register", "write_single_coil"], size=n_hmi
            ).tolist(),
            "protocol": ["modbus"] * n_hmi,
        }
    )
    # maintenance: the engineering workstation reads and (re)loads programs now and then
    # (in the history only: a program change in the live window is an incident by design)
    maint = [
        (op, d % history_days)
        for op, d in [
            ("program_upload", 0),
            ("program_upload", 1),
            ("program_download", 1),
            ("program_upload", 2),
            ("program_download", 3),
            ("program_upload", 4),
        ]
    ]
    parts.append(
        {
            "time": [
                start_ms + d * 86_400_000 + 10 * 3_600_000 + i * 60_000
                for i, (_, d) in enumerate(maint)
            ],
            "src_ip": [ENGINEERING_WS] * 6,
            "device": [_PLCS[int(rng.integers(0, len(_PLCS)))] for _ in maint],
            "ot_operation": [op for op, _ in maint],
            "protocol": ["modbus"] * 6,
        }
    )
    frame = pl.concat([_frame(p) for p in parts], how="diagonal_relaxed").with_columns(
        scenario=pl.lit("")
    )
    return frame


def _render_ot(frame: pl.DataFrame) -> pl.DataFrame:
    # program transfers and run/stop are PLC management records (protocol "plc")
    program = pl.col("ot_operation").str.contains("^(program_|plc_)")
    frame = frame.with_columns(
        protocol=pl.when(program).then(pl.lit("plc")).otherwise(pl.col("protocol")),
    ).with_columns(
        dst_ip=pl.col("device").map_elements(_plc_ip, return_dtype=pl.String),
        dst_port=pl.when(pl.col("protocol") == "modbus")
        .then(502)
        .when(pl.col("protocol") == "opcua")
        .then(4840),
        domain=pl.lit("ot"),
        class_uid=pl.lit(int(EventClass.NETWORK_ACTIVITY)),
        logsource_product=pl.lit("fleetops"),
        logsource_service=pl.col("protocol"),
    )
    lines = []
    for row in frame.select(
        "time", "src_ip", "dst_ip", "dst_port", "device", "protocol", "ot_operation"
    ).iter_rows():
        t, src, dst, port, device, proto, op = row
        rec: dict[str, Any] = {
            "time": datetime.fromtimestamp(t / 1000, UTC).isoformat(timespec="milliseconds"),
            "protocol": proto,
            "src_ip": src,
            "dst_ip": dst,
            "dst_port": port,
            "device": device,
            "operation": op,
        }
        if proto == "modbus":
            rec["function_code"] = _OT_FUNCTIONS.get(op, 0)
        elif op in ("plc_stop", "plc_run"):
            rec["mode"] = op.removeprefix("plc_")
        elif op == "program_download":
            rec["program_name"] = "MAIN"
            rec["program_hash"] = f"{zlib.crc32(f'{device}{t}'.encode()):08x}"
        if port is None:
            del rec["dst_port"]
        lines.append(orjson.dumps(rec).decode())
    return frame.with_columns(line=pl.Series(lines, dtype=pl.String))


# -- vehicles ----------------------------------------------------------------------------------


def _vehicle_rows(
    rng: np.random.Generator, n: int, start_ms: int, days: int, vins: list[str]
) -> pl.DataFrame:
    t = np.sort(start_ms + rng.integers(0, days * 86_400_000, size=n)).astype(np.int64)
    v = rng.integers(0, len(vins), size=n)
    kind = rng.choice(4, size=n, p=[0.76, 0.1, 0.1, 0.04])
    rows: dict[str, list[Any]] = {
        k: [] for k in ("vin", "ecu", "event", "software_version", "campaign_id", "code")
    }
    rows["severity_id"] = []
    for i in range(n):
        k = int(kind[i])
        ecu, sw, camp, code, sev = "TCU", None, None, None, 1
        if k == 0:
            event = "dtc"
            ecu = _ECUS[int(rng.integers(0, len(_ECUS)))]
            code = f"{'PUCB'[int(rng.integers(0, 4))]}{int(rng.integers(0, 0x3FFF)):04X}"
        elif k in (1, 2):
            camp, ecu, sw = _BENIGN_CAMPAIGNS[int(rng.integers(0, len(_BENIGN_CAMPAIGNS)))]
            event = "ota" if k == 1 else "ecu_software"
        else:
            event = "ids"
            ecu = _ECUS[int(rng.integers(0, len(_ECUS)))]
            code = ("timing_anomaly", "unknown_can_id", "payload_out_of_range")[
                int(rng.integers(0, 3))
            ]
            sev = 2
        rows["vin"].append(vins[int(v[i])])
        rows["ecu"].append(ecu)
        rows["event"].append(event)
        rows["software_version"].append(sw)
        rows["campaign_id"].append(camp)
        rows["code"].append(code)
        rows["severity_id"].append(sev)
    return _frame({"time": t, **rows, "scenario": [""] * n})


_EVENT_CLASS: Final[dict[str, int]] = {
    "dtc": int(EventClass.BASE),
    "ota": int(EventClass.DEVICE_CONFIG_STATE_CHANGE),
    "ecu_software": int(EventClass.DEVICE_CONFIG_STATE_CHANGE),
    "ids": int(EventClass.DETECTION_FINDING),
}


def _vehicle_record(row: dict[str, Any]) -> dict[str, Any]:
    """One line of the vehicle-json format: an IDS Detection Finding or a typed event."""
    stamp = datetime.fromtimestamp(row["time"] / 1000, UTC).isoformat(timespec="milliseconds")
    if row["event"] == "ids":
        uid = f"{row['vin']}-{row['ecu']}-{row['time']}-{row['code']}"
        return {
            "class_uid": 2004,
            "activity_id": 1,
            "time": stamp,
            "severity_id": row["severity_id"],
            "status_id": 1,
            "finding_info": {"uid": uid, "title": row["code"], "types": [row["code"]]},
            "resources": [
                {"type": "Vehicle ECU", "uid": row["ecu"], "name": row["ecu"]},
                {"type": "Vehicle", "uid": row["vin"], "name": row["vin"]},
            ],
            "evidences": [{"data": {"bus": "can0"}}],
        }
    if row["event"] == "dtc":
        return {
            "type": "dtc",
            "time": stamp,
            "vin": row["vin"],
            "ecu": row["ecu"],
            "code": row["code"],
            "status": "active",
        }
    rec = {
        "type": row["event"],
        "time": stamp,
        "vin": row["vin"],
        "ecu": row["ecu"],
        "to_version": row["software_version"],
        "result": "success",
    }
    if row["campaign_id"] is not None:
        rec["campaign_id"] = row["campaign_id"]
    return rec


# The raw vehicle-event record (vehicle-json) the generators write.
_VEHICLE_EVENT_COLUMNS = (
    "time",
    "vin",
    "ecu",
    "event",
    "software_version",
    "campaign_id",
    "code",
    "severity_id",
)


def _render_vehicles(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.with_columns(
        domain=pl.lit("vehicle"),
        class_uid=pl.col("event").replace_strict(_EVENT_CLASS, return_dtype=pl.Int32),
        logsource_product=pl.lit("fleetops"),
        logsource_service=pl.col("event").replace_strict(
            {"dtc": "dtc", "ota": "ota", "ecu_software": "ota", "ids": "ids"},
            return_dtype=pl.String,
        ),
        message=pl.when(pl.col("event") == "ids").then(pl.col("code")),
    )
    lines = [
        orjson.dumps(_vehicle_record(row)).decode()
        for row in frame.select(_VEHICLE_EVENT_COLUMNS).iter_rows(named=True)
    ]
    return frame.with_columns(line=pl.Series(lines, dtype=pl.String))


# -- the attacks -------------------------------------------------------------------------------


def _attack_ota(
    rng: np.random.Generator, t0: int, vins: list[str], people: _People
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(auth rows, OTA access rows, vehicle rows) of the supply-chain attack."""
    user, ip, s = PHISHED_USER, PHISH_IP, "ota_supply_chain"
    auth = _frame(
        {
            "time": [t0, t0 + 9_000, t0 + 21_000],
            "user": [user] * 3,
            "src_ip": [ip] * 3,
            "host": ["ota-backend01"] * 3,
            "message": [
                f"Failed password for {user} from {ip} port 50122 ssh2",
                f"Failed password for {user} from {ip} port 50124 ssh2",
                f"Accepted password for {user} from {ip} port 50131 ssh2",
            ],
            "status_id": [int(Status.FAILURE), int(Status.FAILURE), int(Status.SUCCESS)],
            "class_uid": [int(EventClass.AUTHENTICATION)] * 3,
            "scenario": [s] * 3,
        }
    )
    calls = [
        ("POST", "/api/v1/auth/login", 200),
        ("GET", "/api/v1/admin/users", 200),
        ("GET", "/api/v1/admin/signing-keys", 200),
        ("GET", "/api/v1/campaigns", 200),
        ("POST", "/api/v1/admin/campaigns", 201),
        ("PUT", f"/api/v1/admin/campaigns/{EVIL_CAMPAIGN}/payload", 200),
        ("POST", f"/api/v1/admin/campaigns/{EVIL_CAMPAIGN}/approve", 200),
        ("POST", f"/api/v1/admin/campaigns/{EVIL_CAMPAIGN}/rollout", 202),
    ]
    start = t0 + 120_000
    api = _frame(
        {
            "time": [start + 40_000 * i for i in range(len(calls))],
            "src_ip": [ip] * len(calls),
            "user": [user] * len(calls),
            "http_method": [m for m, _, _ in calls],
            "url": [u for _, u, _ in calls],
            "http_status": [c for _, _, c in calls],
            "bytes": rng.integers(200, 9000, size=len(calls)),
            "user_agent": ["Mozilla/5.0 (Windows NT 10.0; Win64; x64)"] * len(calls),
            "scenario": [s] * len(calls),
            "host": ["ota-backend01"] * len(calls),
        }
    )
    rollout = start + 40_000 * len(calls)
    taken = [vins[i] for i in rng.choice(len(vins) // 2, size=40, replace=False)]
    recs: dict[str, list[Any]] = {k: [] for k in _VEHICLE_EVENT_COLUMNS}

    def add(t: int, vin: str, event: str, code: str | None = None, sev: int = 1) -> None:
        recs["time"].append(t)
        recs["vin"].append(vin)
        recs["ecu"].append("GW")
        recs["event"].append(event)
        recs["software_version"].append(EVIL_VERSION if event != "ids" else None)
        recs["campaign_id"].append(EVIL_CAMPAIGN if event != "ids" else None)
        recs["code"].append(code)
        recs["severity_id"].append(sev)

    for j, vin in enumerate(taken):
        ti = rollout + 600_000 + int(rng.integers(0, 6 * 3_600_000))
        add(ti, vin, "ota")
        add(ti + 5_000, vin, "ecu_software")
        if j < 25:
            for a in range(int(rng.integers(2, 5))):
                add(
                    ti + 1_800_000 + a * int(rng.integers(60_000, 900_000)),
                    vin,
                    "ids",
                    ("diag_session_unexpected", "can_injection")[a % 2],
                    4,
                )
    vehicles = _frame({**recs, "scenario": [s] * len(recs["time"])})
    return auth, api, vehicles


def _attack_plc(t0: int) -> pl.DataFrame:
    steps = [
        ("read_device_identification", 0),
        ("read_holding_registers", 5),
        ("program_upload", 30),
        ("plc_stop", 400),
        ("program_download", 420),
        ("plc_run", 700),
    ]
    steps += [("write_multiple_registers", 760 + 2 * i) for i in range(60)]
    n = len(steps)
    return _frame(
        {
            "time": [t0 + s * 1000 for _, s in steps],
            "src_ip": [OT_INTRUDER] * n,
            "device": [TAMPERED_PLC] * n,
            "ot_operation": [op for op, _ in steps],
            "protocol": ["modbus"] * n,
            "scenario": ["plc_tampering"] * n,
        }
    )


def _attack_stuffing(rng: np.random.Generator, t0: int, vins: list[str]) -> pl.DataFrame:
    n_try = 2400
    t = np.sort(t0 + rng.integers(0, 40 * 60_000, size=n_try))
    accounts = [f"c{int(x):07d}" for x in rng.integers(100000, 400000, size=n_try)]
    ok = rng.random(size=n_try) < 0.012
    ips = _pick(rng, STUFFING_IPS, n_try)
    agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/122.0"
    rows: dict[str, list[Any]] = {
        "time": t.tolist(),
        "src_ip": ips,
        "user": accounts,
        "http_method": ["POST"] * n_try,
        "url": ["/api/v1/login"] * n_try,
        "http_status": [200 if o else 401 for o in ok],
    }
    scrape_t = int(t[-1]) + 300_000
    for k, idx in enumerate(np.flatnonzero(ok)):
        acct, ip = accounts[idx], ips[idx]
        vin = vins[int(rng.integers(0, len(vins)))]
        urls = ["/api/v1/account/profile", "/api/v1/account/payment-methods"]
        urls += [f"/api/v1/vehicles/{vin}/{p}" for p in ("status", "location", "charging")]
        urls += [f"/api/v1/vehicles/{vin}/trips?page={p}" for p in range(1, 41)]
        for j, url in enumerate(urls):
            rows["time"].append(scrape_t + k * 30_000 + j * 600)
            rows["src_ip"].append(ip)
            rows["user"].append(acct)
            rows["http_method"].append("GET")
            rows["url"].append(url)
            rows["http_status"].append(200)
    m = len(rows["time"])
    frame = _frame(
        {
            **rows,
            "bytes": rng.integers(200, 9000, size=m),
            "user_agent": [agent] * m,
            "scenario": ["credential_stuffing"] * m,
            "host": ["api.fleetops.example"] * m,
        }
    )
    return frame.sort("time")


def _attack_worm(rng: np.random.Generator, t0: int, vins: list[str]) -> pl.DataFrame:
    infected = [vins[i] for i in rng.choice(range(len(vins) // 2, len(vins)), 10, replace=False)]
    recs: dict[str, list[Any]] = {k: [] for k in _VEHICLE_EVENT_COLUMNS}
    for j, vin in enumerate(infected):
        ti = t0 + j * int(rng.integers(20, 50)) * 60_000
        events: list[tuple[str, str | None, str | None, int]] = [
            ("ecu_software", WORM_VERSION, None, 1)
        ]
        events += [("ids", None, f"c2_connection_{C2_IP}", 4)] * int(rng.integers(2, 4))
        events += [("ids", None, "v2x_malformed_message", 4)]
        for a, (ev, sw, code, sev) in enumerate(events):
            recs["time"].append(ti + a * int(rng.integers(60_000, 600_000)))
            recs["vin"].append(vin)
            recs["ecu"].append("TCU")
            recs["event"].append(ev)
            recs["software_version"].append(sw)
            recs["campaign_id"].append(None)
            recs["code"].append(code)
            recs["severity_id"].append(sev)
    return _frame({**recs, "scenario": ["telematics_worm"] * len(recs["time"])})


# -- putting it together -----------------------------------------------------------------------


def generate(
    benign_events: int = 100_000,
    *,
    seed: int = 7,
    days: int = 7,
    history_days: int = 5,
    vehicles: int | None = None,
    attacks: bool = True,
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC),
) -> ScenarioData:
    """Simulate ``benign_events`` benign records over ``days`` days plus the four attacks.

    Attacks start after ``history_days`` (at fixed offsets, in different hours), so a model
    fitted on records before :attr:`ScenarioData.history_end` has seen only benign traffic.
    ``vehicles`` defaults to what gives each vehicle about 1.5 events a day, so per-vehicle
    behaviour does not change with the volume asked for.
    """
    if history_days >= days:
        raise ValueError("history_days must be less than days")
    rng = np.random.default_rng(seed)
    start_ms = _ms(start)
    history_end = start + timedelta(days=history_days)
    eval_ms = _ms(history_end)
    people = _people(rng)
    count = {name: int(benign_events * share) for name, share in _SHARES.items()}
    count["vehicles.jsonl"] += benign_events - sum(count.values())
    if vehicles is None:  # about 1.5 events per vehicle and day, whatever the volume
        vehicles = max(200, int(count["vehicles.jsonl"] / (1.5 * days)))
    vins = [_vin(i) for i in range(vehicles)]
    vehicle_ips = [f"100.64.{i // 250 % 256}.{1 + i % 250}" for i in range(vehicles)]

    auth = _auth_rows(rng, count["auth.log"], start_ms, days, people)
    ota = _ota_rows(rng, count["ota_access.log"], start_ms, days, people, vins, vehicle_ips)
    services = _services_rows(rng, count["services_access.log"], start_ms, days, vins)
    ot = _ot_rows(rng, count["ot.jsonl"], start_ms, days, history_days)
    veh = _vehicle_rows(rng, count["vehicles.jsonl"], start_ms, days, vins)
    if attacks:
        hour = 3_600_000
        a_auth, a_ota, a_veh = _attack_ota(rng, eval_ms + 26 * hour + 47 * 60_000, vins, people)
        auth = pl.concat([auth, a_auth], how="diagonal_relaxed")
        ota = pl.concat([ota, a_ota], how="diagonal_relaxed")
        ot = pl.concat([ot, _attack_plc(eval_ms + 13 * hour + 10 * 60_000)], how="diagonal_relaxed")
        services = pl.concat(
            [services, _attack_stuffing(rng, eval_ms + 21 * hour, vins)], how="diagonal_relaxed"
        )
        veh = pl.concat(
            [veh, a_veh, _attack_worm(rng, eval_ms + 33 * hour, vins)], how="diagonal_relaxed"
        )

    def ordered(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.sort("time", maintain_order=True)

    files = {
        "auth.log": _render_auth(ordered(auth), rng),
        "ota_access.log": _combined(ordered(ota)),
        "services_access.log": _combined(ordered(services)),
        "ot.jsonl": _render_ot(ordered(ot)),
        "vehicles.jsonl": _render_vehicles(ordered(veh)),
    }
    return ScenarioData(files, seed, start, history_end)

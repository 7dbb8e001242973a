"""Behavioural baselines per entity: scored findings for what no rule describes.

Every model is an estimator: parameters in ``__init__``, :meth:`fit` on benign history
(normalised events, :data:`~fleetops.core.ocsf.EVENT_SCHEMA`), :meth:`score` on new events
returning findings (:data:`~fleetops.core.ocsf.FINDING_SCHEMA`, ``source = "anomaly"``).
Statistics are robust (medians and MADs, Poisson tails) and each entity's rate is shrunk
towards the fleet's (a gamma prior worth ``prior_hours`` of fleet behaviour), so an entity
with little history is judged by what is normal for its peers.

========================  ===================================================================
model                     flags
========================  ===================================================================
:class:`LoginModel`       successful logins from a network the user never came from, at an
                          hour the user is rarely active, after failures; failure bursts
:class:`ApiClientModel`   API clients far above the fleet in requests, distinct pages or
                          4xx share per window (scraping, enumeration); a known user calling
                          endpoints they never used from a new address (stolen credential)
:class:`CredentialStuffing` many failed logins across many accounts from few sources, and the
                          accounts that then logged in from them (aggregation)
:class:`PlcModel`         OT hosts talking to a PLC they never talked to, operations new to
                          the PLC (program download, stop/run), write bursts; new
                          conversations on the control network
:class:`VehicleModel`     vehicles whose IDS alert rate is far above the fleet's, software
                          cohorts (version / campaign) whose vehicles alert, ECU software
                          changed outside any campaign
========================  ===================================================================

:func:`default_models` gives one of each; :func:`score_all` fits and scores them together.
Findings name related entities beyond the finding's own columns in ``evidence["related"]``
(for example every VIN of a suspicious campaign), which correlation links on.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Protocol, Self

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl

from fleetops.core.ocsf import (
    ENTITY_COLUMNS,
    EVENT_SCHEMA,
    FINDING_SCHEMA,
    EventClass,
    Severity,
    Status,
    conform_events,
    findings_from_records,
)

SOURCE: Final = "anomaly"

_VIN_RE: Final = r"\b[A-HJ-NPR-Z0-9]{17}\b"
_CAMPAIGN_RE: Final = r"(?i)campaigns?/([A-Za-z0-9][A-Za-z0-9._-]{2,})"
_WRITE_OPS: Final = ("write", "download", "stop", "run", "force", "reset", "delete")
_PROGRAM_OPS: Final[dict[str, tuple[str, ...]]] = {
    "download": ("T0843",),
    "upload": ("T0845",),
    "stop": ("T0858", "T0881"),
    "run": ("T0858",),
    "identification": ("T0888",),
}


class Model(Protocol):
    """What :func:`score_all` needs of a model."""

    name: str

    def fit(self, events: pl.DataFrame) -> Self: ...

    def score(self, events: pl.DataFrame) -> pl.DataFrame: ...


# -- shared helpers ----------------------------------------------------------------------------


def poisson_tail_log10(k: npt.ArrayLike, mu: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """log10 of an upper bound of P(X ≥ k), X ~ Poisson(mu); 0 where k ≤ mu.

    P(X ≥ k) ≤ pmf(k) / (1 − mu / (k + 1)) (the tail's terms shrink at least geometrically),
    within a few per cent of the exact tail for k well above mu; an upper bound on the
    p-value, so a flag on it is never more eager than the exact test.
    """
    kk = np.asarray(k, dtype=np.float64)
    mm = np.maximum(np.asarray(mu, dtype=np.float64), 1e-12)
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    above = kk > mm
    safe_k = np.where(above, kk, mm + 1)
    log_pmf = safe_k * np.log(mm) - mm - lgamma(safe_k + 1)
    log_p = log_pmf - np.log1p(-mm / (safe_k + 1))
    return np.where(above, np.minimum(log_p, 0.0) / math.log(10), 0.0)


def robust_z(values: npt.ArrayLike, reference: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(x − median) / (1.4826 · MAD) against ``reference`` (MAD floored at 1 % of |median|+1)."""
    ref = np.asarray(reference, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64)
    if ref.size == 0:
        return np.zeros_like(x)
    med = float(np.median(ref))
    mad = float(np.median(np.abs(ref - med))) * 1.4826
    return (x - med) / max(mad, 0.01 * (abs(med) + 1), 1e-9)


def network_of(ip: str | None) -> str | None:
    """The /16 (IPv4) or /48 (IPv6) a source belongs to: our stand-in for 'where from'."""
    if not ip:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 16 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def is_public(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


def endpoint_template(url: pl.Expr) -> pl.Expr:
    """A URL without its identifiers: VINs, campaign ids, numbers, hex ids, query values."""
    path = url.str.split("?").list.first()
    query_keys = url.str.extract(r"\?(.*)$", 1).str.replace_all(r"=[^&]*", "=*")
    path = (
        path.str.replace_all(_VIN_RE, "{vin}")
        .str.replace_all(r"(?i)(campaigns?/)[A-Za-z0-9][A-Za-z0-9._-]*", "${1}{id}")
        .str.replace_all(r"/[0-9a-fA-F-]{8,}(/|$)", "/{id}$1")
        .str.replace_all(r"/\d+(/|$)", "/{n}$1")
    )
    return pl.when(query_keys.is_null()).then(path).otherwise(pl.format("{}?{}", path, query_keys))


def _uid(*parts: object) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


def _finding(
    rule: str,
    title: str,
    severity: int,
    score: float,
    techniques: Sequence[str],
    first: dict[str, Any],
    entities: dict[str, str | None],
    evidence: dict[str, Any],
    domain: str | None = None,
) -> dict[str, Any]:
    """A finding record; ``first`` is the first event row behind it (time, file, record)."""
    ent = {k: v for k, v in entities.items() if k in ENTITY_COLUMNS and v}
    time = first["time"]
    return {
        "time": time,
        "finding_uid": _uid(
            rule, sorted(ent.items()), time, first.get("source_file"), first.get("record_index")
        ),
        "source": SOURCE,
        "rule_id": rule,
        "title": title,
        "severity_id": int(severity),
        "techniques": list(techniques),
        "domain": domain or first.get("domain"),
        **ent,
        "score": float(round(score, 4)),
        "source_file": first.get("source_file"),
        "record_index": first.get("record_index"),
        "evidence": orjson.dumps(evidence, default=str).decode(),
    }


def _to_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    if not records:
        return pl.DataFrame(schema=FINDING_SCHEMA)
    frame = findings_from_records(records)
    return frame.sort("time", "finding_uid")


def _ensure(events: pl.DataFrame) -> pl.DataFrame:
    return events if set(EVENT_SCHEMA) <= set(events.columns) else conform_events(events)


def _hours(events: pl.DataFrame) -> float:
    if events.height == 0:
        return 1.0
    span = events["time"].max() - events["time"].min()  # type: ignore[operator]
    assert isinstance(span, timedelta)
    return max(span.total_seconds() / 3600, 1.0)


def _severity(log10_p: float, strong: float, high: bool = True) -> int:
    if log10_p <= strong and high:
        return int(Severity.HIGH)
    return int(Severity.MEDIUM)


# -- user logins --------------------------------------------------------------------------------


@dataclass
class LoginModel:
    """Per-user login baseline: source networks, hours of activity, failure rate.

    A successful login is scored by the evidence against it: a network new to the user
    (+2; +1 more if public), an hour the user is rarely active (+1.5, from the user's hour
    histogram smoothed towards the fleet's), failures from that source just before (+1).
    ``threshold`` decides what becomes a finding; ``high`` what is high severity.
    """

    threshold: float = 3.0
    high: float = 4.0
    rare_hour: float = 0.02
    prior_logins: float = 20.0
    failure_window: timedelta = timedelta(minutes=30)
    name: str = "anomaly.login"
    networks_: dict[str, set[str]] = field(default_factory=dict, repr=False)
    hours_: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict, repr=False)
    fleet_hours_: npt.NDArray[np.float64] = field(default_factory=lambda: np.full(24, 1 / 24))

    @staticmethod
    def _logins(events: pl.DataFrame) -> pl.DataFrame:
        return events.filter(
            (pl.col("class_uid") == int(EventClass.AUTHENTICATION)) & pl.col("user").is_not_null()
        )

    def fit(self, events: pl.DataFrame) -> Self:
        logins = self._logins(_ensure(events))
        ok = logins.filter(pl.col("status_id") == int(Status.SUCCESS))
        self.networks_ = {}
        for user, ip in ok.select("user", "src_ip").unique().iter_rows():
            net = network_of(ip)
            if net is not None:
                self.networks_.setdefault(user, set()).add(net)
        hours = ok.select("user", pl.col("time").dt.hour().alias("h")).group_by("user", "h").len()
        fleet = np.bincount(ok["time"].dt.hour().to_numpy(), minlength=24).astype(np.float64) + 1
        self.fleet_hours_ = fleet / fleet.sum()
        self.hours_ = {}
        for user, h, n in hours.iter_rows():
            self.hours_.setdefault(user, np.zeros(24))[h] += n
        return self

    def hour_probability(self, user: str, hour: int) -> float:
        counts = self.hours_.get(user, np.zeros(24))
        smoothed = counts + self.prior_logins * self.fleet_hours_
        return float(smoothed[hour] / smoothed.sum())

    def score(self, events: pl.DataFrame) -> pl.DataFrame:
        logins = self._logins(_ensure(events)).sort("time")
        if logins.height == 0:
            return _to_frame([])
        fails = logins.filter(pl.col("status_id") == int(Status.FAILURE))
        fail_times: dict[tuple[str, str | None], list[Any]] = {}
        for user, ip, t in fails.select("user", "src_ip", "time").iter_rows():
            fail_times.setdefault((user, ip), []).append(t)
        records = []
        for row in logins.filter(pl.col("status_id") == int(Status.SUCCESS)).iter_rows(named=True):
            user, ip = row["user"], row["src_ip"]
            known = self.networks_.get(user)
            if not known:  # a user we have no history of: nothing to compare with
                continue
            net = network_of(ip)
            score, why = 0.0, []
            if net is not None and net not in known:
                score += 2 + (1 if is_public(ip) else 0)
                why.append(f"new network {net}")
            p_hour = self.hour_probability(user, row["time"].hour)
            if p_hour < self.rare_hour:
                score += 1.5
                why.append(f"rare hour {row['time'].hour:02d}h (p={p_hour:.3f})")
            before = [
                t
                for t in fail_times.get((user, ip), [])
                if row["time"] - self.failure_window <= t <= row["time"]
            ]
            if before:
                score += 1
                why.append(f"{len(before)} failures just before")
            if score < self.threshold:
                continue
            records.append(
                _finding(
                    self.name,
                    f"Unusual login of {user} from {ip}",
                    Severity.HIGH if score >= self.high else Severity.MEDIUM,
                    score,
                    ("T1078",),
                    row,
                    {"user": user, "src_ip": ip, "host": row["host"]},
                    {"why": why, "known_networks": sorted(known)[:10]},
                )
            )
        return _to_frame(records)


# -- API clients ------------------------------------------------------------------------------------


@dataclass
class ApiClientModel:
    """API clients (by source address) per ``window`` against the fleet of clients.

    Fit learns the fleet's distribution of requests, distinct pages and 4xx per client-window
    (median/MAD of log counts) and, per user, the endpoint templates and networks they use.
    Scoring flags (1) client-windows far above the fleet (robust z ≥ ``z_threshold`` on
    distinct pages or requests, and at least ``min_pages`` pages): scraping / enumeration;
    (2) a known user calling ≥ ``min_new_endpoints`` endpoints they never used, from a
    network they never used: a stolen credential in use.
    """

    window: timedelta = timedelta(minutes=10)
    z_threshold: float = 8.0
    min_pages: int = 30
    min_new_endpoints: int = 2
    name: str = "anomaly.api_client"
    ref_pages_: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    ref_requests_: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    endpoints_: dict[str, set[str]] = field(default_factory=dict, repr=False)
    networks_: dict[str, set[str]] = field(default_factory=dict, repr=False)

    @staticmethod
    def _requests(events: pl.DataFrame) -> pl.DataFrame:
        return events.filter(
            pl.col("http_method").is_not_null() & pl.col("src_ip").is_not_null()
        ).with_columns(endpoint=pl.format("{} {}", "http_method", endpoint_template(pl.col("url"))))

    def _windows(self, req: pl.DataFrame) -> pl.DataFrame:
        every = f"{int(self.window.total_seconds())}s"
        return (
            req.with_columns(w=pl.col("time").dt.truncate(every))
            .group_by("src_ip", "w")
            .agg(
                requests=pl.len(),
                pages=pl.col("url").n_unique(),
                client_errors=(
                    (pl.col("http_status") >= 400) & (pl.col("http_status") < 500)
                ).sum(),
                users=pl.col("user").drop_nulls().unique().head(20),
                first=pl.struct(pl.all()).sort_by("time").first(),
            )
        )

    def fit(self, events: pl.DataFrame) -> Self:
        req = self._requests(_ensure(events))
        win = self._windows(req)
        self.ref_pages_ = np.log1p(win["pages"].to_numpy().astype(np.float64))
        self.ref_requests_ = np.log1p(win["requests"].to_numpy().astype(np.float64))
        self.endpoints_, self.networks_ = {}, {}
        users = req.filter(pl.col("user").is_not_null())
        for user, eps in users.group_by("user").agg(pl.col("endpoint").unique()).iter_rows():
            self.endpoints_[user] = set(eps)
        for user, ips in users.group_by("user").agg(pl.col("src_ip").unique()).iter_rows():
            self.networks_[user] = {n for n in map(network_of, ips) if n}
        return self

    def score(self, events: pl.DataFrame) -> pl.DataFrame:
        req = self._requests(_ensure(events))
        if req.height == 0:
            return _to_frame([])
        records: list[dict[str, Any]] = []
        win = self._windows(req)
        zp = robust_z(np.log1p(win["pages"].to_numpy().astype(np.float64)), self.ref_pages_)
        zr = robust_z(np.log1p(win["requests"].to_numpy().astype(np.float64)), self.ref_requests_)
        win = win.with_columns(zp=pl.Series(zp), zr=pl.Series(zr))
        hot = win.filter(
            (pl.max_horizontal("zp", "zr") >= self.z_threshold)
            & (pl.col("pages") >= self.min_pages)
        )
        for row in hot.sort("w", "src_ip").iter_rows(named=True):
            first = row["first"]
            z = max(row["zp"], row["zr"])
            users = [u for u in row["users"] if u]
            records.append(
                _finding(
                    self.name + ".volume",
                    f"API client {row['src_ip']}: {row['pages']} distinct pages, "
                    f"{row['requests']} requests in {int(self.window.total_seconds() // 60)} min",
                    Severity.HIGH if z >= 2 * self.z_threshold else Severity.MEDIUM,
                    z,
                    ("T1213", "T1119"),
                    first,
                    {
                        "src_ip": row["src_ip"],
                        "user": users[0] if len(users) == 1 else None,
                        "host": first.get("host"),
                    },
                    {
                        "requests": row["requests"],
                        "pages": row["pages"],
                        "client_errors": row["client_errors"],
                        "z_pages": round(row["zp"], 2),
                        "z_requests": round(row["zr"], 2),
                        "related": {"user": users},
                    },
                    "service",
                )
            )
        records += self._novel_endpoints(req)
        return _to_frame(records)

    def _novel_endpoints(self, req: pl.DataFrame) -> list[dict[str, Any]]:
        records = []
        users = req.filter(pl.col("user").is_in(list(self.endpoints_)))
        for (user, ip), calls in users.group_by("user", "src_ip", maintain_order=True):
            assert isinstance(user, str) and isinstance(ip, str)
            net = network_of(ip)
            if net is None or net in self.networks_.get(user, set()):
                continue
            known = self.endpoints_[user]
            novel = sorted(set(calls["endpoint"].to_list()) - known)
            if len(novel) < self.min_new_endpoints:
                continue
            group = calls.sort("time")
            first = group.row(0, named=True)
            campaigns = (
                group["url"].str.extract(_CAMPAIGN_RE, 1).drop_nulls().unique().sort().to_list()
            )
            vins = group["url"].str.extract(f"({_VIN_RE})", 1).drop_nulls().unique().to_list()
            writes = int(group["http_method"].is_in(["POST", "PUT", "PATCH", "DELETE"]).sum())
            score = len(novel) + (2 if is_public(ip) else 1) + min(writes, 3)
            records.append(
                _finding(
                    self.name + ".new_endpoints",
                    f"{user} called {len(novel)} endpoints new to them from new network {net}",
                    Severity.HIGH if writes and len(novel) >= 3 else Severity.MEDIUM,
                    score,
                    ("T1078", "T1106"),
                    first,
                    {
                        "user": user,
                        "src_ip": ip,
                        "host": first.get("host"),
                        "campaign_id": campaigns[0] if len(campaigns) == 1 else None,
                    },
                    {
                        "new_endpoints": novel[:20],
                        "writes": writes,
                        "requests": group.height,
                        "related": {"campaign_id": campaigns, "vin": vins[:50]},
                    },
                    "service",
                )
            )
        return records


# -- credential stuffing --------------------------------------------------------------------------


@dataclass
class CredentialStuffing:
    """Many failed logins across many accounts from few sources (aggregation, T1110.004).

    A failed login is an authentication event with status failure, or an HTTP request to a
    login-like endpoint (``login``, ``signin``, ``auth``, ``token``, ``session``) answered
    401/403. Per source and ``window``: a source with ≥ ``min_accounts`` distinct accounts
    failing (and above the fleet's accounts-per-source by a robust z of ``z_threshold``) is
    a stuffing source. Sources active in overlapping windows form one finding that also
    names the accounts that then logged in successfully from them (taken over).
    """

    window: timedelta = timedelta(hours=1)
    min_accounts: int = 25
    z_threshold: float = 8.0
    name: str = "anomaly.credential_stuffing"
    ref_accounts_: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)

    @staticmethod
    def _attempts(events: pl.DataFrame) -> pl.DataFrame:
        login_url = pl.col("url").str.contains(r"(?i)(log_?in|sign_?in|/auth|token|session)")
        http = pl.col("http_method").is_not_null() & login_url.fill_null(False)
        auth = pl.col("class_uid") == int(EventClass.AUTHENTICATION)
        failed = (auth & (pl.col("status_id") == int(Status.FAILURE))) | (
            http & pl.col("http_status").is_in([401, 403])
        )
        ok = (auth & (pl.col("status_id") == int(Status.SUCCESS))) | (
            http & (pl.col("http_status") < 300)
        )
        return events.filter((auth | http) & pl.col("src_ip").is_not_null()).with_columns(
            failed=failed.fill_null(False), ok=ok.fill_null(False)
        )

    def _per_source(self, attempts: pl.DataFrame) -> pl.DataFrame:
        every = f"{int(self.window.total_seconds())}s"
        return (
            attempts.filter("failed")
            .with_columns(w=pl.col("time").dt.truncate(every))
            .group_by("src_ip", "w")
            .agg(
                failures=pl.len(),
                accounts=pl.col("user").n_unique(),
                first=pl.struct(pl.all()).sort_by("time").first(),
            )
        )

    def fit(self, events: pl.DataFrame) -> Self:
        per = self._per_source(self._attempts(_ensure(events)))
        self.ref_accounts_ = np.log1p(per["accounts"].to_numpy().astype(np.float64))
        return self

    def score(self, events: pl.DataFrame) -> pl.DataFrame:
        attempts = self._attempts(_ensure(events))
        per = self._per_source(attempts)
        if per.height == 0:
            return _to_frame([])
        z = robust_z(np.log1p(per["accounts"].to_numpy().astype(np.float64)), self.ref_accounts_)
        per = per.with_columns(z=pl.Series(z)).filter(
            (pl.col("accounts") >= self.min_accounts) & (pl.col("z") >= self.z_threshold)
        )
        if per.height == 0:
            return _to_frame([])
        # sources whose windows touch form one campaign of attempts
        per = per.sort("w")
        groups: list[list[dict[str, Any]]] = []
        for row in per.iter_rows(named=True):
            if groups and row["w"] - groups[-1][-1]["w"] <= self.window:
                groups[-1].append(row)
            else:
                groups.append([row])
        records = []
        for rows in groups:
            ips = sorted({r["src_ip"] for r in rows})
            start = min(r["w"] for r in rows)
            end = max(r["w"] for r in rows) + 2 * self.window
            taken = (
                attempts.filter(
                    pl.col("ok")
                    & pl.col("src_ip").is_in(ips)
                    & pl.col("time").is_between(start, end)
                )["user"]
                .drop_nulls()
                .unique()
                .sort()
                .to_list()
            )
            first = min((r["first"] for r in rows), key=lambda f: f["time"])
            failures = sum(r["failures"] for r in rows)
            accounts = sum(r["accounts"] for r in rows)
            records.append(
                _finding(
                    self.name,
                    f"Credential stuffing: {failures} failed logins over {accounts} accounts "
                    f"from {len(ips)} sources, {len(taken)} accounts then logged in",
                    Severity.HIGH if taken else Severity.MEDIUM,
                    max(r["z"] for r in rows),
                    ("T1110.004",) + (("T1078",) if taken else ()),
                    first,
                    {"src_ip": ips[0], "host": first.get("host")},
                    {
                        "failures": failures,
                        "accounts": accounts,
                        "sources": ips,
                        "taken_over": taken[:200],
                        "related": {"src_ip": ips, "user": taken[:200]},
                    },
                )
            )
        return _to_frame(records)


# -- PLCs / OT network ---------------------------------------------------------------------------


@dataclass
class PlcModel:
    """Per PLC (``device``, else ``dst_ip``): who talks to it, which operations, write rate.

    Scored per (PLC, source, ``window``): a source new to the PLC (+2; +1 more if the
    source was never seen on the OT network), each operation new to the PLC (+1.5; program
    download / stop / run / upload +2.5), writes above the PLC's rate at its busiest hour of
    the day (Poisson tail, the fleet of PLCs as prior, below ``alpha`` over the number of
    windows tested; +1 per decade beyond). An operation is new when the
    PLC never saw it and its source never did it to any PLC (the engineering station that
    reprograms PLCs in maintenance windows is not new on the next PLC). Also flags conversations
    (source, destination, port) new to the OT network that carry no PLC operation (IT
    protocols inside the control network). ``threshold``/``high`` as in :class:`LoginModel`.
    """

    window: timedelta = timedelta(minutes=10)
    threshold: float = 2.0
    high: float = 4.5
    alpha: float = 0.01
    prior_hours: float = 24.0
    name: str = "anomaly.plc"
    sources_: dict[str, set[str]] = field(default_factory=dict, repr=False)
    operations_: dict[str, set[str]] = field(default_factory=dict, repr=False)
    hosts_: set[str] = field(default_factory=set, repr=False)
    conversations_: set[tuple[str, str, int]] = field(default_factory=set, repr=False)
    source_ops_: set[tuple[str, str]] = field(default_factory=set, repr=False)
    write_rate_: dict[str, float] = field(default_factory=dict, repr=False)
    fleet_write_rate_: float = 0.0

    @staticmethod
    def _ot(events: pl.DataFrame) -> pl.DataFrame:
        """OT events with client → server orientation: a packet answered from the lower
        (service) port is turned around, so a request and its response are one pair."""
        ot = events.filter((pl.col("domain") == "ot") & pl.col("src_ip").is_not_null())
        answer = (pl.col("src_port") < pl.col("dst_port")).fill_null(False)
        ot = ot.with_columns(
            src_ip=pl.when(answer).then(pl.col("dst_ip")).otherwise(pl.col("src_ip")),
            dst_ip=pl.when(answer).then(pl.col("src_ip")).otherwise(pl.col("dst_ip")),
            conv_port=pl.when(answer)
            .then(pl.col("src_port"))
            .otherwise(pl.col("dst_port"))
            .fill_null(-1),
        )
        return ot.with_columns(
            plc=pl.coalesce("device", "dst_ip"),
            op=pl.col("ot_operation").str.to_lowercase(),
            is_write=pl.col("ot_operation")
            .str.to_lowercase()
            .str.contains("|".join(_WRITE_OPS))
            .fill_null(False),
        )

    def fit(self, events: pl.DataFrame) -> Self:
        ot = self._ot(_ensure(events))
        ops = ot.filter(pl.col("op").is_not_null() & pl.col("plc").is_not_null())
        self.sources_ = {
            p: set(s) for p, s in ops.group_by("plc").agg(pl.col("src_ip").unique()).iter_rows()
        }
        self.operations_ = {
            p: set(o) for p, o in ops.group_by("plc").agg(pl.col("op").unique()).iter_rows()
        }
        self.source_ops_ = set(ops.select("src_ip", "op").unique().iter_rows())
        self.hosts_ = set(ot["src_ip"].unique().to_list()) | set(
            ot["dst_ip"].drop_nulls().unique().to_list()
        )
        self.conversations_ = set(
            ot.select("src_ip", pl.col("dst_ip").fill_null(""), "conv_port").unique().iter_rows()
        )
        # writes per hour at each PLC's busiest hour of the day (shifts are not uniform)
        hours = _hours(ot)
        days = max(hours / 24, 1.0)
        by_hour = (
            ops.filter("is_write")
            .group_by("plc", pl.col("time").dt.hour().alias("h"))
            .len()
            .group_by("plc")
            .agg(peak=pl.col("len").max())
        )
        peak = {p: n / days for p, n in by_hour.iter_rows()}
        n_plc = max(len(self.operations_), 1)
        self.fleet_write_rate_ = sum(peak.values()) / n_plc
        shrink = self.prior_hours / 24  # days of fleet behaviour in the prior
        self.write_rate_ = {
            p: (peak.get(p, 0.0) * days + shrink * self.fleet_write_rate_) / (days + shrink)
            for p in self.operations_
        }
        return self

    def _event_points(self, ot: pl.DataFrame) -> pl.DataFrame:
        """Per event: novelty points of its (plc, source, operation) and of its conversation."""
        known_pairs = pl.DataFrame(
            [(p, s) for p, srcs in self.sources_.items() for s in srcs],
            schema={"plc": pl.String, "src_ip": pl.String},
            orient="row",
        ).with_columns(pair_known=pl.lit(True))
        known_ops = pl.DataFrame(
            [(p, o) for p, ops in self.operations_.items() for o in ops],
            schema={"plc": pl.String, "op": pl.String},
            orient="row",
        ).with_columns(op_known=pl.lit(True))
        source_ops = pl.DataFrame(
            list(self.source_ops_), schema={"src_ip": pl.String, "op": pl.String}, orient="row"
        ).with_columns(source_op_known=pl.lit(True))
        convs = pl.DataFrame(
            list(self.conversations_),
            schema={"src_ip": pl.String, "dst_ip": pl.String, "conv_port": pl.Int32},
            orient="row",
        ).with_columns(conv_known=pl.lit(True))
        hosts = list(self.hosts_)
        program = pl.col("op").str.contains("download|upload|stop|run|program|firmware")
        return (
            ot.with_row_index("_row")
            .join(known_pairs, on=["plc", "src_ip"], how="left")
            .join(known_ops, on=["plc", "op"], how="left")
            .join(source_ops, on=["src_ip", "op"], how="left")
            .join(
                convs,
                left_on=["src_ip", pl.col("dst_ip").fill_null(""), "conv_port"],
                right_on=["src_ip", "dst_ip", "conv_port"],
                how="left",
            )
            .sort("_row")
            .with_columns(
                new_source=pl.col("op").is_not_null() & pl.col("pair_known").is_null(),
                new_host=~pl.col("src_ip").is_in(hosts),
                # new to the PLC, and not something its source does elsewhere in the plant
                new_op=pl.col("op").is_not_null()
                & pl.col("op_known").is_null()
                & pl.col("source_op_known").is_null(),
                new_conv=pl.col("op").is_null() & pl.col("conv_known").is_null(),
                program=program.fill_null(False),
            )
        )

    def flag_events(self, events: pl.DataFrame) -> pl.Series:
        """Per event (order kept): does it belong to something :meth:`score` would flag?"""
        ot_all = _ensure(events).with_row_index("_pos")
        ot = self._ot(ot_all)
        pts = self._event_points(ot)
        flagged = pts.filter(
            pl.col("new_source") | pl.col("new_op") | pl.col("new_conv") | pl.col("new_host")
        )["_pos"]
        return ot_all["_pos"].is_in(flagged.implode()).alias("flagged")

    def score(self, events: pl.DataFrame) -> pl.DataFrame:
        ot = self._ot(_ensure(events))
        if ot.height == 0:
            return _to_frame([])
        pts = self._event_points(ot)
        every = f"{int(self.window.total_seconds())}s"
        hours = self.window.total_seconds() / 3600
        records = []
        ops = pts.filter(pl.col("plc").is_not_null() & pl.col("op").is_not_null())
        tests = max(ops["plc"].n_unique(), 1) * max(_hours(ot) / hours, 1.0)
        threshold = math.log10(self.alpha / tests)
        grouped = (
            ops.with_columns(w=pl.col("time").dt.truncate(every))
            .group_by("plc", "src_ip", "w")
            .agg(
                new_source=pl.col("new_source").any(),
                new_host=pl.col("new_host").any(),
                new_ops=pl.col("op").filter("new_op").unique().sort(),
                program_ops=pl.col("op").filter("new_op" & pl.col("program")).unique().sort(),
                writes=pl.col("is_write").sum(),
                events=pl.len(),
                first=pl.struct(pl.all().exclude("_row")).sort_by("time").first(),
            )
            .sort("w", "plc", "src_ip")
        )
        for row in grouped.iter_rows(named=True):
            plc = row["plc"]
            score, techniques, why = 0.0, [], []
            if row["new_source"]:
                score += 2 + (1 if row["new_host"] else 0)
                techniques.append("T0886" if not row["new_host"] else "T0848")
                why.append(
                    "source new to this PLC" + (" and to the network" if row["new_host"] else "")
                )
            for op in row["new_ops"]:
                is_program = op in row["program_ops"]
                score += 2.5 if is_program else 1.5
                why.append(f"operation {op} new to this PLC")
                for key, tech in _PROGRAM_OPS.items():
                    if key in op:
                        techniques.extend(tech)
            rate = self.write_rate_.get(plc, self.fleet_write_rate_)
            lp = float(poisson_tail_log10(row["writes"], rate * hours + 1e-3))
            if lp < threshold:
                score += min(threshold - lp + 1, 4)
                techniques.extend(("T0836", "T0855"))
                why.append(f"{row['writes']} writes (p≈1e{lp:.0f})")
            if score < self.threshold:
                continue
            first = row["first"]
            records.append(
                _finding(
                    self.name,
                    f"PLC {plc}: unusual activity from {row['src_ip']}",
                    Severity.HIGH if score >= self.high else Severity.MEDIUM,
                    score,
                    sorted(set(techniques)) or ["T0855"],
                    first,
                    {"device": plc, "src_ip": row["src_ip"], "dst_ip": first.get("dst_ip")},
                    {"why": why, "events": row["events"], "writes": row["writes"]},
                    "ot",
                )
            )
        convs = (
            pts.filter("new_conv")
            .with_columns(w=pl.col("time").dt.truncate(every))
            .group_by("src_ip", "dst_ip", "conv_port", "w")
            .agg(events=pl.len(), first=pl.struct(pl.all().exclude("_row")).sort_by("time").first())
            .sort("w", "src_ip", "dst_ip", "conv_port")
        )
        for row in convs.iter_rows(named=True):
            first = row["first"]
            records.append(
                _finding(
                    self.name + ".conversation",
                    f"New conversation on the OT network: {row['src_ip']} → "
                    f"{row['dst_ip']}:{row['conv_port']}",
                    Severity.MEDIUM,
                    2.0 + math.log10(row["events"]),
                    ("T0886",),
                    first,
                    {"src_ip": row["src_ip"], "dst_ip": row["dst_ip"]},
                    {"events": row["events"], "port": row["conv_port"]},
                    "ot",
                )
            )
        return _to_frame(records)


# -- vehicles --------------------------------------------------------------------------------------


@dataclass
class VehicleModel:
    """Vehicles' IDS alerts against the fleet, software cohorts, unauthorised changes.

    * per VIN and ``window``: alerts against the fleet's alert rate per vehicle-hour
      (shrunk per VIN with ``prior_hours``); flagged when the Poisson tail is below
      ``alpha`` divided by the number of (VIN, window) pairs tested;
    * per software cohort (``software_version`` and campaign the vehicles installed):
      how many of its vehicles alert within ``blame_window`` after installing it, against
      how many the fleet's alert rate expects over the same exposure (vehicles, not alerts:
      a few noisy vehicles that also took the update do not make it suspect);
    * an ECU software change that names no campaign, to a version never seen in history.
    """

    window: timedelta = timedelta(hours=6)
    blame_window: timedelta = timedelta(hours=24)
    alpha: float = 0.01
    prior_hours: float = 48.0
    min_cohort_alerting: int = 3
    name: str = "anomaly.vehicle"
    fleet_rate_: float = 0.0
    vin_rate_: dict[str, float] = field(default_factory=dict, repr=False)
    versions_: set[str] = field(default_factory=set, repr=False)

    @staticmethod
    def _alerts(events: pl.DataFrame) -> pl.DataFrame:
        return events.filter(
            (pl.col("domain") == "vehicle")
            & pl.col("vin").is_not_null()
            & (
                (pl.col("class_uid") == int(EventClass.DETECTION_FINDING))
                | (pl.col("logsource_service") == "ids")
            )
        )

    @staticmethod
    def _changes(events: pl.DataFrame) -> pl.DataFrame:
        return events.filter(
            (pl.col("domain") == "vehicle")
            & pl.col("vin").is_not_null()
            & pl.col("software_version").is_not_null()
        )

    def fit(self, events: pl.DataFrame) -> Self:
        events = _ensure(events)
        veh = events.filter(pl.col("domain") == "vehicle")
        hours = _hours(veh)
        alerts = self._alerts(events)
        vins = max(veh["vin"].n_unique(), 1)
        self.fleet_rate_ = max(alerts.height, 1) / (hours * vins)
        self.vin_rate_ = {
            v: (n + self.prior_hours * self.fleet_rate_) / (hours + self.prior_hours)
            for v, n in alerts.group_by("vin").len().iter_rows()
        }
        self.versions_ = set(self._changes(events)["software_version"].unique().to_list())
        return self

    def score(self, events: pl.DataFrame) -> pl.DataFrame:
        events = _ensure(events)
        veh = events.filter(pl.col("domain") == "vehicle")
        if veh.height == 0:
            return _to_frame([])
        alerts = self._alerts(events).sort("time")
        records = []
        hours = self.window.total_seconds() / 3600
        per_vin = (
            alerts.with_columns(w=pl.col("time").dt.truncate(f"{int(hours * 3600)}s"))
            .group_by("vin", "w")
            .agg(
                n=pl.len(),
                max_sev=pl.col("severity_id").max(),
                ecus=pl.col("ecu").drop_nulls().unique().sort(),
                dst=pl.col("dst_ip").drop_nulls().unique().sort(),
                kinds=pl.col("message").drop_nulls().unique().sort().head(10),
                first=pl.struct(pl.all()).first(),
            )
            .sort("w", "vin")
        )
        windows = max(int(_hours(veh) / hours + 0.999), 1)
        tests = max(veh["vin"].n_unique(), 1) * windows
        threshold = math.log10(self.alpha / tests)
        mu = np.array([self.vin_rate_.get(v, self.fleet_rate_) * hours for v in per_vin["vin"]])
        lp = poisson_tail_log10(per_vin["n"].to_numpy(), mu.reshape(-1) + 1e-9)
        for row, p in zip(per_vin.iter_rows(named=True), lp, strict=True):
            if p > threshold:
                continue
            ecus, dst = row["ecus"], row["dst"]
            records.append(
                _finding(
                    self.name + ".alert_rate",
                    f"Vehicle {row['vin']}: {row['n']} IDS alerts in {hours:g} h (fleet expects "
                    f"{self.vin_rate_.get(row['vin'], self.fleet_rate_) * hours:.2g})",
                    Severity.HIGH if (row["max_sev"] or 0) >= Severity.HIGH else Severity.MEDIUM,
                    -float(p),
                    ("T1071",) if dst else ("T1498",),
                    row["first"],
                    {
                        "vin": row["vin"],
                        "ecu": ecus[0] if len(ecus) == 1 else None,
                        "dst_ip": dst[0] if len(dst) == 1 else None,
                    },
                    {
                        "alerts": row["n"],
                        "kinds": row["kinds"],
                        "log10_p": round(float(p), 1),
                        "related": {"dst_ip": dst, "ecu": ecus},
                    },
                    "vehicle",
                )
            )
        records += self._cohorts(events, alerts, threshold)
        records += self._unauthorised(events)
        return _to_frame(records)

    def _cohorts(
        self, events: pl.DataFrame, alerts: pl.DataFrame, threshold: float
    ) -> list[dict[str, Any]]:
        installs = (
            self._changes(events)
            .filter(pl.col("campaign_id").is_not_null())
            .group_by("vin", "software_version", "campaign_id")
            .agg(installed=pl.col("time").min(), first=pl.struct(pl.all()).sort_by("time").first())
        )
        if installs.height == 0 or alerts.height == 0:
            return []
        end = events["time"].max()
        # each install is blamed for its vehicle's alerts in the following blame_window
        exposure = installs.with_columns(
            until=pl.min_horizontal(pl.col("installed") + self.blame_window, pl.lit(end))
        ).with_columns(hours=(pl.col("until") - pl.col("installed")).dt.total_seconds() / 3600)
        blamed = exposure.join(
            alerts.select("vin", pl.col("time").alias("alert_time")), on="vin"
        ).filter(pl.col("alert_time").is_between(pl.col("installed"), pl.col("until")))
        after = blamed.group_by("software_version", "campaign_id").agg(
            alerts=pl.len(), alerting=pl.col("vin").unique().sort()
        )
        rate = self.fleet_rate_
        size = exposure.group_by("software_version", "campaign_id").agg(
            vehicles=pl.col("vin").n_unique(),
            hours=pl.col("hours").sum(),
            # vehicles expected to alert at least once in their exposure at the fleet rate
            expected=(1 - (-rate * pl.col("hours").clip(lower_bound=1.0)).exp()).sum(),
            first=pl.col("first").sort_by("installed").first(),
        )
        records = []
        cohorts = max(size.height, 1)
        for row in after.join(size, on=["software_version", "campaign_id"]).iter_rows(named=True):
            k, n = len(row["alerting"]), row["vehicles"]
            mu = float(row["expected"])
            p = float(poisson_tail_log10(k, mu))
            if k < self.min_cohort_alerting or p > threshold - math.log10(cohorts):
                continue
            records.append(
                _finding(
                    self.name + ".cohort",
                    f"{k} of {n} vehicles alert after installing {row['software_version']} "
                    f"(campaign {row['campaign_id']}; the fleet's rate expects {mu:.2g})",
                    Severity.CRITICAL if k / max(n, 1) > 0.25 else Severity.HIGH,
                    -p,
                    ("T1195.002",),
                    row["first"],
                    {
                        "software_version": row["software_version"],
                        "campaign_id": row["campaign_id"],
                    },
                    {
                        "alerting_vehicles": k,
                        "cohort": n,
                        "alerts": row["alerts"],
                        "expected": round(mu, 3),
                        "log10_p": round(p, 1),
                        "related": {"vin": row["alerting"]},
                    },
                    "vehicle",
                )
            )
        return records

    def _unauthorised(self, events: pl.DataFrame) -> list[dict[str, Any]]:
        changes = self._changes(events).filter(
            pl.col("campaign_id").is_null()
            & ~pl.col("software_version").is_in(list(self.versions_))
        )
        records = []
        for row in changes.sort("time").iter_rows(named=True):
            records.append(
                _finding(
                    self.name + ".unauthorised_software",
                    f"{row['vin']} {row['ecu']}: software {row['software_version']} "
                    "installed outside any campaign",
                    Severity.MEDIUM,
                    3.0,
                    ("T1601", "T1542"),
                    row,
                    {k: row[k] for k in ("vin", "ecu", "software_version")},
                    {"version_seen_before": False},
                    "vehicle",
                )
            )
        return records


# -- all together ------------------------------------------------------------------------------------


def default_models() -> list[Model]:
    return [LoginModel(), ApiClientModel(), CredentialStuffing(), PlcModel(), VehicleModel()]


def score_all(
    history: pl.DataFrame, events: pl.DataFrame, models: Iterable[Model] | None = None
) -> pl.DataFrame:
    """Fit each model on ``history`` and score ``events``; one findings frame."""
    history, events = _ensure(history), _ensure(events)
    frames = [m.fit(history).score(events) for m in (models or default_models())]
    return pl.concat(frames, how="vertical").sort("time", "finding_uid")

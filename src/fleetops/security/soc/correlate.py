"""Findings from every detector and layer, grouped into incidents an analyst can work.

:func:`correlate` runs in four steps:

1. **Duplicates**: findings of the same rule on the same entities within
   ``suppress_window`` of each other are one finding with a tally (``duplicates``).
2. **Links**: two findings are linked when they share an entity value (user, host, IP,
   VIN, ECU of that VIN, software version, campaign, OT device — the finding's columns and
   the ``related`` lists in its evidence) and are at most ``link_window`` apart (each
   entity's findings are chained in time order). An entity value that is everywhere is no
   evidence of a common cause: values in more than ``hub_event_share`` of the events (a web
   server, the SCADA master) or of the findings (``hub_share``, beyond ``hub_min``) do not link.
3. **Components**: union-find over the links; a component is an incident when it holds a
   finding of at least ``min_severity``, or several rules whose severities add up to
   ``min_total_severity``.
4. **Incident**: deterministic id (from its earliest finding), timeline, kill chain
   (ATT&CK Enterprise and ICS tactics in order, from the findings' techniques), severity,
   triage priority = severity × breadth × asset criticality.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
import polars as pl

from fleetops.core.ocsf import ENTITY_COLUMNS, FINDING_SCHEMA, Severity, conform_findings

ENTERPRISE_TACTICS: Final[tuple[str, ...]] = (
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
)
ICS_TACTICS: Final[tuple[str, ...]] = (
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "evasion",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "inhibit-response-function",
    "impair-process-control",
    "impact",
)
_ORDER: Final[dict[str, int]] = {
    t: i
    for i, t in enumerate(
        dict.fromkeys(
            [
                *ENTERPRISE_TACTICS[:7],
                "evasion",
                *ENTERPRISE_TACTICS[7:12],
                "inhibit-response-function",
                "impair-process-control",
                *ENTERPRISE_TACTICS[12:],
            ]
        )
    )
}

# technique (without sub-technique) → its primary tactic; Enterprise and ICS.
TECHNIQUE_TACTIC: Final[dict[str, str]] = {
    # Enterprise
    "T1595": "reconnaissance",
    "T1592": "reconnaissance",
    "T1589": "reconnaissance",
    "T1598": "reconnaissance",
    "T1583": "resource-development",
    "T1587": "resource-development",
    "T1566": "initial-access",
    "T1190": "initial-access",
    "T1133": "initial-access",
    "T1195": "initial-access",
    "T1199": "initial-access",
    "T1078": "initial-access",
    "T1189": "initial-access",
    "T1200": "initial-access",
    "T1059": "execution",
    "T1106": "execution",
    "T1203": "execution",
    "T1204": "execution",
    "T1047": "execution",
    "T1053": "execution",
    "T1569": "execution",
    "T1129": "execution",
    "T1098": "persistence",
    "T1136": "persistence",
    "T1543": "persistence",
    "T1547": "persistence",
    "T1505": "persistence",
    "T1546": "persistence",
    "T1542": "persistence",
    "T1554": "persistence",
    "T1037": "persistence",
    "T1548": "privilege-escalation",
    "T1068": "privilege-escalation",
    "T1055": "privilege-escalation",
    "T1134": "privilege-escalation",
    "T1070": "defense-evasion",
    "T1562": "defense-evasion",
    "T1027": "defense-evasion",
    "T1036": "defense-evasion",
    "T1112": "defense-evasion",
    "T1218": "defense-evasion",
    "T1140": "defense-evasion",
    "T1222": "defense-evasion",
    "T1601": "defense-evasion",
    "T1014": "defense-evasion",
    "T1564": "defense-evasion",
    "T1553": "defense-evasion",
    "T1110": "credential-access",
    "T1003": "credential-access",
    "T1552": "credential-access",
    "T1555": "credential-access",
    "T1558": "credential-access",
    "T1556": "credential-access",
    "T1557": "credential-access",
    "T1040": "credential-access",
    "T1087": "discovery",
    "T1082": "discovery",
    "T1083": "discovery",
    "T1046": "discovery",
    "T1018": "discovery",
    "T1016": "discovery",
    "T1049": "discovery",
    "T1057": "discovery",
    "T1069": "discovery",
    "T1033": "discovery",
    "T1012": "discovery",
    "T1518": "discovery",
    "T1021": "lateral-movement",
    "T1570": "lateral-movement",
    "T1210": "lateral-movement",
    "T1563": "lateral-movement",
    "T1534": "lateral-movement",
    "T1213": "collection",
    "T1119": "collection",
    "T1005": "collection",
    "T1530": "collection",
    "T1114": "collection",
    "T1560": "collection",
    "T1074": "collection",
    "T1039": "collection",
    "T1071": "command-and-control",
    "T1105": "command-and-control",
    "T1090": "command-and-control",
    "T1572": "command-and-control",
    "T1573": "command-and-control",
    "T1095": "command-and-control",
    "T1219": "command-and-control",
    "T1102": "command-and-control",
    "T1571": "command-and-control",
    "T1041": "exfiltration",
    "T1048": "exfiltration",
    "T1567": "exfiltration",
    "T1020": "exfiltration",
    "T1029": "exfiltration",
    "T1485": "impact",
    "T1486": "impact",
    "T1489": "impact",
    "T1490": "impact",
    "T1498": "impact",
    "T1499": "impact",
    "T1529": "impact",
    "T1565": "impact",
    "T1531": "impact",
    "T1496": "impact",
    # ICS
    "T0817": "initial-access",
    "T0819": "initial-access",
    "T0822": "initial-access",
    "T0847": "initial-access",
    "T0848": "initial-access",
    "T0862": "initial-access",
    "T0864": "initial-access",
    "T0866": "initial-access",
    "T0883": "initial-access",
    "T0886": "initial-access",
    "T0807": "execution",
    "T0821": "execution",
    "T0823": "execution",
    "T0834": "execution",
    "T0853": "execution",
    "T0858": "execution",
    "T0863": "execution",
    "T0871": "execution",
    "T0873": "persistence",
    "T0839": "persistence",
    "T0889": "persistence",
    "T0874": "privilege-escalation",
    "T0890": "privilege-escalation",
    "T0820": "evasion",
    "T0849": "evasion",
    "T0851": "evasion",
    "T0872": "evasion",
    "T0840": "discovery",
    "T0842": "discovery",
    "T0846": "discovery",
    "T0887": "discovery",
    "T0888": "discovery",
    "T0812": "lateral-movement",
    "T0843": "lateral-movement",
    "T0859": "lateral-movement",
    "T0867": "lateral-movement",
    "T0802": "collection",
    "T0811": "collection",
    "T0845": "collection",
    "T0801": "collection",
    "T0852": "collection",
    "T0861": "collection",
    "T0868": "collection",
    "T0877": "collection",
    "T0830": "collection",
    "T0893": "collection",
    "T0884": "command-and-control",
    "T0869": "command-and-control",
    "T0885": "command-and-control",
    "T0800": "inhibit-response-function",
    "T0803": "inhibit-response-function",
    "T0804": "inhibit-response-function",
    "T0805": "inhibit-response-function",
    "T0809": "inhibit-response-function",
    "T0814": "inhibit-response-function",
    "T0816": "inhibit-response-function",
    "T0835": "inhibit-response-function",
    "T0838": "inhibit-response-function",
    "T0878": "inhibit-response-function",
    "T0881": "inhibit-response-function",
    "T0892": "inhibit-response-function",
    "T0806": "impair-process-control",
    "T0836": "impair-process-control",
    "T0855": "impair-process-control",
    "T0856": "impair-process-control",
    "T0813": "impact",
    "T0815": "impact",
    "T0826": "impact",
    "T0827": "impact",
    "T0828": "impact",
    "T0829": "impact",
    "T0831": "impact",
    "T0832": "impact",
    "T0837": "impact",
    "T0879": "impact",
    "T0880": "impact",
    "T0882": "impact",
}

STATUSES: Final[tuple[str, ...]] = (
    "new",
    "acknowledged",
    "in_progress",
    "resolved",
    "false_positive",
)

DEFAULT_CRITICALITY: Final[dict[str, float]] = {
    "device": 1.5,  # a PLC drives a production line
    "campaign_id": 1.5,  # an update campaign reaches many vehicles
    "vin": 1.2,
    "software_version": 1.2,
}


def tactic_of(technique: str) -> str | None:
    """The ATT&CK tactic of a technique id (``T1110.004`` → ``credential-access``)."""
    base = technique.strip().upper().split(".")[0]
    return TECHNIQUE_TACTIC.get(base)


@dataclass(frozen=True)
class Incident:
    """Findings that belong together, with what an analyst needs to triage them."""

    incident_id: str
    title: str
    severity_id: int
    priority: float
    first_seen: datetime
    last_seen: datetime
    domains: list[str]
    rules: list[str]
    entities: dict[str, list[str]]
    kill_chain: list[dict[str, Any]]
    findings: pl.DataFrame = field(repr=False)  # + duplicates, last_seen, member_uids

    @property
    def finding_uids(self) -> list[str]:
        """Every finding of the incident, the suppressed duplicates included."""
        return self.findings["member_uids"].explode().drop_nulls().to_list()

    @property
    def priority_label(self) -> str:
        return priority_label(self.priority)

    def timeline(self) -> list[dict[str, Any]]:
        """One entry per (de-duplicated) finding, in time order."""
        cols = [
            "time",
            "rule_id",
            "title",
            "severity_id",
            "domain",
            "duplicates",
            "source_file",
            "record_index",
        ]
        return [
            {**row, "time": row["time"].isoformat()}
            for row in self.findings.sort("time").select(cols).iter_rows(named=True)
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "title": self.title,
            "severity_id": self.severity_id,
            "priority": round(self.priority, 2),
            "priority_label": self.priority_label,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "domains": self.domains,
            "rules": self.rules,
            "findings": self.findings.height,
            "alerts": int(self.findings["duplicates"].sum()),
            "entities": self.entities,
            "kill_chain": self.kill_chain,
        }


def priority_label(priority: float) -> str:
    if priority >= 20:
        return "P1"
    if priority >= 10:
        return "P2"
    if priority >= 5:
        return "P3"
    return "P4"


@dataclass
class Correlator:
    """Parameters of :func:`correlate` (see the module's description)."""

    suppress_window: timedelta = timedelta(hours=1)
    link_window: timedelta = timedelta(hours=12)
    hub_share: float = 0.2
    hub_min: int = 50
    hub_event_share: float = 0.05
    min_severity: int = int(Severity.HIGH)
    min_total_severity: int = 8
    criticality: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_CRITICALITY))
    asset_criticality: Mapping[str, float] = field(default_factory=dict)
    """Per entity value (``"device=plc-line2-03"`` or just the value): a multiplier."""

    # -- 1. duplicates ----------------------------------------------------------------------

    def suppress(self, findings: pl.DataFrame) -> pl.DataFrame:
        """One row per (rule, entities, burst) with ``duplicates`` and ``last_seen``."""
        f = conform_findings(findings)
        if f.height == 0:
            return f.with_columns(
                duplicates=pl.lit(0, pl.Int64),
                last_seen=pl.col("time"),
                member_uids=pl.lit([], dtype=pl.List(pl.String)),
            )
        key = pl.concat_str(
            [pl.col("rule_id").fill_null("")] + [pl.col(c).fill_null("") for c in ENTITY_COLUMNS],
            separator="\x1f",
        )
        gap = int(self.suppress_window.total_seconds() * 1000)
        f = f.with_columns(_key=key).sort("_key", "time", "finding_uid")
        t = pl.col("time").dt.epoch("ms")
        burst = (
            ((pl.col("_key") != pl.col("_key").shift(1)) | ((t - t.shift(1)) > gap))
            .fill_null(True)
            .cum_sum()
        )
        f = f.with_columns(_burst=burst)
        kept = f.group_by("_burst", maintain_order=True).agg(
            pl.all().exclude("_key").first(),
            duplicates=pl.len().cast(pl.Int64),
            last_seen=pl.col("time").max(),
            member_uids=pl.col("finding_uid"),
        )
        return kept.drop("_burst").sort("time", "finding_uid")

    # -- 2. links -----------------------------------------------------------------------------

    @staticmethod
    def _entity_keys(row: dict[str, Any]) -> set[str]:
        keys = set()
        for col in ENTITY_COLUMNS:
            value = row.get(col)
            if not value:
                continue
            if col == "ecu":  # an ECU name is only an entity within its vehicle
                if row.get("vin"):
                    keys.add(f"ecu={row['vin']}/{value}")
                continue
            keys.add(f"{col}={value}")
        try:
            evidence = orjson.loads(row.get("evidence") or "{}")
        except orjson.JSONDecodeError:
            evidence = {}
        related = evidence.get("related") if isinstance(evidence, dict) else None
        if isinstance(related, dict):
            for col, values in related.items():
                if col in ENTITY_COLUMNS and col != "ecu" and isinstance(values, list):
                    keys.update(f"{col}={v}" for v in values if isinstance(v, str) and v)
        return keys

    def hubs(self, keys: list[set[str]], events: pl.DataFrame | None) -> set[str]:
        """Entity values too common to be a link."""
        counts: dict[str, int] = {}
        for ks in keys:
            for k in ks:
                counts[k] = counts.get(k, 0) + 1
        limit = max(self.hub_min, self.hub_share * len(keys))
        hubs = {k for k, n in counts.items() if n > limit}
        if events is not None and events.height:
            candidates: dict[str, list[str]] = {}
            for k in counts:
                col, _, value = k.partition("=")
                if col in events.columns and col != "ecu":
                    candidates.setdefault(col, []).append(value)
            threshold = self.hub_event_share * events.height
            for col, values in candidates.items():
                hits = (
                    events.select(pl.col(col))
                    .filter(pl.col(col).is_in(values))
                    .group_by(col)
                    .len()
                    .filter(pl.col("len") > threshold)
                )
                hubs.update(f"{col}={v}" for v in hits[col].to_list())
        return hubs

    # -- 3 + 4. components into incidents ----------------------------------------------------

    def correlate(
        self, findings: pl.DataFrame, events: pl.DataFrame | None = None
    ) -> list[Incident]:
        kept = self.suppress(findings)
        rows = kept.to_dicts()
        keys = [self._entity_keys(r) for r in rows]
        hubs = self.hubs(keys, events)
        parent = list(range(len(rows)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        by_key: dict[str, list[int]] = {}
        for i, ks in enumerate(keys):
            for k in ks - hubs:
                by_key.setdefault(k, []).append(i)
        window = self.link_window
        for members in by_key.values():
            members.sort(key=lambda i: rows[i]["time"])
            for a, b in itertools.pairwise(members):
                if rows[b]["time"] - rows[a]["last_seen"] <= window:
                    ra, rb = find(a), find(b)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
        groups: dict[int, list[int]] = {}
        for i in range(len(rows)):
            groups.setdefault(find(i), []).append(i)
        incidents = []
        for members in groups.values():
            if not self._qualifies([rows[i] for i in members]):
                continue
            incidents.append(self._incident(kept[members], [keys[i] - hubs for i in members]))
        return sorted(incidents, key=lambda inc: (-inc.priority, inc.first_seen))

    def _qualifies(self, rows: list[dict[str, Any]]) -> bool:
        if max((r["severity_id"] or 0) for r in rows) >= self.min_severity:
            return True
        per_rule: dict[str, int] = {}
        for r in rows:
            per_rule[r["rule_id"]] = max(per_rule.get(r["rule_id"], 0), r["severity_id"] or 0)
        return len(per_rule) >= 2 and sum(per_rule.values()) >= self.min_total_severity

    def _incident(self, findings: pl.DataFrame, keys: list[set[str]]) -> Incident:
        findings = findings.sort("time", "finding_uid")
        first = findings.row(0, named=True)
        incident_id = "INC-" + hashlib.sha1(first["finding_uid"].encode()).hexdigest()[:12].upper()
        entities: dict[str, set[str]] = {}
        for ks in keys:
            for k in ks:
                col, _, value = k.partition("=")
                entities.setdefault(col, set()).add(value)
        severity = int(findings["severity_id"].max() or 0)  # type: ignore[arg-type]
        top = findings.sort(["severity_id", "score"], descending=True, nulls_last=True).row(
            0, named=True
        )
        domains = sorted(d for d in findings["domain"].unique().to_list() if d)
        rules = sorted(findings["rule_id"].unique().to_list())
        breadth = 1 + math.log10(1 + sum(len(v) for v in entities.values()))
        breadth *= 1 + 0.5 * (len(domains) - 1) if domains else 1
        crit = max(
            [self.criticality.get(col, 1.0) for col in entities]
            + [
                self.asset_criticality.get(f"{col}={v}", self.asset_criticality.get(v, 1.0))
                for col, values in entities.items()
                for v in values
            ]
            + [1.0]
        )
        priority = severity * breadth * crit
        title = top["title"] or top["rule_id"]
        if findings.height > 1:
            title += f" (+{findings.height - 1} related findings)"
        return Incident(
            incident_id=incident_id,
            title=title,
            severity_id=severity,
            priority=priority,
            first_seen=findings["time"].min(),  # type: ignore[arg-type]
            last_seen=findings["last_seen"].max(),  # type: ignore[arg-type]
            domains=domains,
            rules=rules,
            entities={k: sorted(v)[:100] for k, v in sorted(entities.items())},
            kill_chain=kill_chain(findings),
            findings=findings,
        )


def kill_chain(findings: pl.DataFrame) -> list[dict[str, Any]]:
    """Tactics in ATT&CK order with their techniques and when each was first seen."""
    stages: dict[str, dict[str, Any]] = {}
    for t, techniques in findings.select("time", "techniques").iter_rows():
        for tech in techniques or []:
            tactic = tactic_of(tech) or "unmapped"
            stage = stages.setdefault(
                tactic, {"tactic": tactic, "techniques": set(), "first_seen": t}
            )
            stage["techniques"].add(tech.upper())
            stage["first_seen"] = min(stage["first_seen"], t)
    order = sorted(stages.values(), key=lambda s: (_ORDER.get(s["tactic"], 99), s["first_seen"]))
    return [
        {
            "tactic": s["tactic"],
            "techniques": sorted(s["techniques"]),
            "first_seen": s["first_seen"].isoformat(),
        }
        for s in order
    ]


def correlate(
    findings: pl.DataFrame, events: pl.DataFrame | None = None, **params: Any
) -> list[Incident]:
    """Group findings (:data:`FINDING_SCHEMA`) into incidents; see :class:`Correlator`."""
    return Correlator(**params).correlate(findings, events)


__all__ = [
    "ENTERPRISE_TACTICS",
    "FINDING_SCHEMA",
    "ICS_TACTICS",
    "STATUSES",
    "Correlator",
    "Incident",
    "correlate",
    "kill_chain",
    "priority_label",
    "tactic_of",
]

"""The closed loop to the cyber defence centre.

* A halt becomes findings (``core.ocsf`` FINDING_SCHEMA rows, ``source`` "ota"): one per
  regressed signal, with the campaign, the software version and the evidence (rates,
  counts, p-value, threshold, cohort sizes, wave, the updated VINs showing the signal).
* IDS findings of vehicles that installed a campaign's release shortly before get that
  campaign and version filled in (:func:`link_findings_to_campaigns`), so correlation on
  ``campaign_id`` puts release, vehicles and alerts into one incident.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import orjson
import polars as pl

from fleetops.core.errors import ValidationError
from fleetops.core.ocsf import Domain, Severity, findings_from_records
from fleetops.ota.rollout.campaign import Campaign


def halt_findings(campaign: Campaign) -> pl.DataFrame:
    """The campaign's latest halt as findings (empty if it never halted)."""
    evidence = campaign.halt_evidence
    halt = next((t for t in reversed(campaign.transitions) if t["to"] == "halted"), None)
    if evidence is None or halt is None:
        return findings_from_records([])
    records = []
    for sig in evidence.get("signals", []):
        security = sig.get("kind") == "security"
        detail = {k: v for k, v in evidence.items() if k not in ("signals", "all_signals")}
        detail["signal"] = sig
        detail["vins"] = sig.get("treated_vins", [])
        uid = hashlib.sha256(
            f"ota|{campaign.campaign_id}|{sig['signal']}|{halt['epoch']}".encode()
        ).hexdigest()
        records.append(
            {
                "time": round(halt["epoch"] * 1000),
                "finding_uid": uid,
                "source": "ota",
                "rule_id": f"ota-auto-halt/{sig['signal']}",
                "title": f"OTA campaign {campaign.name} halted: {sig['signal']} regressed "
                f"after {campaign.release.name}",
                "severity_id": int(Severity.HIGH if security else Severity.MEDIUM),
                "techniques": [],
                "domain": Domain.VEHICLE.value,
                "software_version": campaign.release.version,
                "campaign_id": campaign.campaign_id,
                "ecu": ",".join(sorted(set(campaign.members["ecu"].to_list()))),
                "score": None if sig.get("p_value") is None else 1.0 - float(sig["p_value"]),
                "evidence": orjson.dumps(detail).decode(),
            }
        )
    return findings_from_records(records)


def link_findings_to_campaigns(
    findings: pl.DataFrame, installs: pl.DataFrame, window: timedelta = timedelta(days=7)
) -> pl.DataFrame:
    """Fill ``campaign_id`` and ``software_version`` of findings whose vehicle installed a
    campaign's release at most ``window`` before the finding (latest install wins).

    ``installs``: ``vin``, ``time``, ``campaign_id``, ``software_version`` and optionally
    ``result`` (only successes count) — :meth:`Campaign.installs_frame` gives it. Findings
    that already name a campaign, or have no VIN, are left as they are; rows keep their
    order and schema.
    """
    need = {"vin", "time", "campaign_id", "software_version"}
    missing = need - set(installs.columns)
    if missing:
        raise ValidationError(f"the installs frame lacks columns {sorted(missing)}")
    if window <= timedelta(0):
        raise ValidationError("the linking window must be positive")
    if findings.is_empty() or installs.is_empty():
        return findings
    inst = installs
    if "result" in inst.columns:
        inst = inst.filter(pl.col("result") == "success")
    inst = (
        inst.select(
            pl.col("vin"),
            pl.col("time").cast(pl.Datetime("ms", "UTC")).alias("_installed"),
            pl.col("campaign_id").alias("_campaign"),
            pl.col("software_version").alias("_version"),
        )
        .drop_nulls(["vin", "_installed"])
        .sort("_installed")
    )
    f = findings.with_row_index("_row")
    keyed = f.filter(pl.col("vin").is_not_null() & pl.col("time").is_not_null()).sort("time")
    joined = keyed.join_asof(
        inst,
        left_on="time",
        right_on="_installed",
        by="vin",
        strategy="backward",
        tolerance=window,
        check_sortedness=False,  # both sides are sorted on the time keys above
    ).select("_row", "_campaign", "_version")
    out = f.join(joined, on="_row", how="left").sort("_row")
    fill = pl.col("campaign_id").is_null() & pl.col("_campaign").is_not_null()
    return out.with_columns(
        pl.when(fill)
        .then(pl.col("_campaign"))
        .otherwise(pl.col("campaign_id"))
        .alias("campaign_id"),
        pl.when(fill)
        .then(pl.col("_version"))
        .otherwise(pl.col("software_version"))
        .alias("software_version"),
    ).select(findings.columns)


def campaign_incident(
    campaign: Campaign, findings: pl.DataFrame, window: timedelta = timedelta(days=7)
) -> pl.DataFrame:
    """The halt's findings and every finding linked to the campaign: one incident's rows."""
    linked = link_findings_to_campaigns(findings, campaign.installs_frame(), window)
    mine = linked.filter(pl.col("campaign_id") == campaign.campaign_id)
    return pl.concat([halt_findings(campaign), mine.select(halt_findings(campaign).columns)])

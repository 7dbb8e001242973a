"""From files to incidents: parse, Sigma rules, anomaly models, correlation.

>>> result = detect(["auth.log", "ot.jsonl"], rules=["rules/"])   # doctest: +SKIP
>>> result.findings            # FINDING_SCHEMA rows, from Sigma and the models
>>> result.incidents           # list[Incident], highest priority first

The anomaly models are fitted on ``baseline`` events (benign history) when given, else on
the input itself (self-baselining: the rate and volume models still flag outliers against
their peers; the novelty models — new network, new endpoint, new PLC operation — need a
history to be new against, so give one where you have it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from fleetops.core.errors import ConfigError
from fleetops.core.ocsf import ENTITY_COLUMNS, FINDING_SCHEMA, EventBatch, Severity
from fleetops.security.soc.anomaly import Model, default_models
from fleetops.security.soc.correlate import Correlator, Incident


@dataclass(frozen=True)
class FileCount:
    path: str
    format: str
    parsed: int
    rejected: int


@dataclass
class Detection:
    batch: EventBatch
    files: list[FileCount]
    findings: pl.DataFrame
    incidents: list[Incident]

    def incident_of(self) -> dict[str, str]:
        """finding_uid → incident id (for findings that made it into an incident)."""
        return {uid: inc.incident_id for inc in self.incidents for uid in inc.finding_uids}


def parse_inputs(
    paths: Sequence[str | Path],
    fmt: str = "auto",
    *,
    on_file: Callable[[FileCount], None] | None = None,
) -> tuple[EventBatch, list[FileCount]]:
    """Parse every file (``fmt`` for all, or ``auto`` per file) into one batch."""
    from fleetops.security.soc.parsers import FORMATS, detect_format, parse_file

    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (auto or one of {', '.join(FORMATS)})")
    batches, counts = [], []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise ConfigError(f"{path} is not a file")
        used = fmt
        if fmt == "auto":
            with path.open("rb") as src:
                used = detect_format(src.read(65536), path.name) or "auto"
        batch = parse_file(path, fmt)
        batches.append(batch)
        count = FileCount(str(path), used, batch.parsed, batch.rejected)
        counts.append(count)
        if on_file is not None:
            on_file(count)
    return EventBatch.concat(batches), counts


def load_ruleset(paths: Sequence[str | Path]) -> Any:
    """The Sigma rules under ``paths`` (a ``RuleSet``)."""
    from fleetops.security.soc.sigma import RuleSet

    for p in paths:
        if not Path(p).exists():
            raise ConfigError(f"rules path {p} does not exist")
    return RuleSet.load(list(paths))


def run_models(
    history: pl.DataFrame, events: pl.DataFrame, models: Sequence[Model] | None = None
) -> pl.DataFrame:
    frames = [m.fit(history).score(events) for m in (models or default_models())]
    if not frames:
        return pl.DataFrame(schema=FINDING_SCHEMA)
    return pl.concat(frames, how="vertical")


def detect_batch(
    batch: EventBatch,
    *,
    rules: Any = None,
    history: pl.DataFrame | None = None,
    models: Sequence[Model] | None = None,
    correlator: Correlator | None = None,
) -> tuple[pl.DataFrame, list[Incident]]:
    """Findings (Sigma + models) over ``batch`` and the incidents they form."""
    frames = []
    if rules is not None and batch.parsed:
        frames.append(rules.evaluate(batch))
    if batch.parsed:
        frames.append(
            run_models(history if history is not None else batch.events, batch.events, models)
        )
    findings = (
        pl.concat(frames, how="vertical").sort("time", "finding_uid", nulls_last=True)
        if frames
        else pl.DataFrame(schema=FINDING_SCHEMA)
    )
    incidents = (correlator or Correlator()).correlate(findings, batch.events)
    return findings, incidents


def detect(
    inputs: Sequence[str | Path],
    *,
    rules: Sequence[str | Path] = (),
    fmt: str = "auto",
    baseline: Sequence[str | Path] = (),
    baseline_until: datetime | None = None,
    correlator: Correlator | None = None,
    on_file: Callable[[FileCount], None] | None = None,
) -> Detection:
    """Parse ``inputs``, evaluate ``rules`` and the models, correlate; see the module doc.

    ``baseline`` files are benign history the models learn from; with ``baseline_until``
    instead, the input's events before that time are the history (and are still scanned
    by the rules).
    """
    batch, counts = parse_inputs(inputs, fmt, on_file=on_file)
    ruleset = load_ruleset(rules) if rules else None
    history: pl.DataFrame | None = None
    if baseline:
        history = parse_inputs(baseline, fmt)[0].events
    elif baseline_until is not None:
        history = batch.events.filter(pl.col("time") < baseline_until)
    findings, incidents = detect_batch(batch, rules=ruleset, history=history, correlator=correlator)
    return Detection(batch, counts, findings, incidents)


def finding_records(
    findings: pl.DataFrame, incident_of: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Findings as the JSON objects ``fleetops soc detect --out`` writes, one per finding."""
    records = []
    for row in findings.iter_rows(named=True):
        try:
            evidence = orjson.loads(row["evidence"]) if row["evidence"] else {}
        except orjson.JSONDecodeError:
            evidence = {"raw": row["evidence"]}
        sev = row["severity_id"]
        records.append(
            {
                "finding_uid": row["finding_uid"],
                "time": row["time"].isoformat() if row["time"] is not None else None,
                "source": row["source"],
                "rule_id": row["rule_id"],
                "model": row["rule_id"] if row["source"] == "anomaly" else None,
                "title": row["title"],
                "techniques": list(row["techniques"] or []),
                "severity_id": sev,
                "severity": Severity(sev).name.lower()
                if sev in Severity._value2member_map_
                else None,
                "domain": row["domain"],
                "entities": {c: row[c] for c in ENTITY_COLUMNS if row[c] is not None},
                "score": row["score"],
                "source_file": row["source_file"],
                "record_index": row["record_index"],
                "incident_id": (incident_of or {}).get(row["finding_uid"]),
                "evidence": evidence,
            }
        )
    return records


def write_findings_jsonl(
    findings: pl.DataFrame, path: str | Path, incident_of: dict[str, str] | None = None
) -> int:
    """Write one JSON object per line; returns the number written."""
    records = finding_records(findings, incident_of)
    with Path(path).open("wb") as sink:
        for rec in records:
            sink.write(orjson.dumps(rec) + b"\n")
    return len(records)


def evaluate_incidents(
    events: pl.DataFrame,
    truth: pl.DataFrame,
    findings: pl.DataFrame,
    incidents: Sequence[Incident],
    *,
    margin_s: float = 3600.0,
) -> dict[str, Any]:
    """Score incidents against ground truth (``source_file``, ``record_index``, ``scenario``).

    Per scenario: ``findings`` (its records that some detector flagged), ``incidents`` (how
    many incidents hold its findings — 1 is the goal), ``recall`` (share of its records the
    incident accounts for: records sharing an entity value with the incident within its
    time span, ± ``margin_s``), ``purity`` (share of the incident's findings that are the
    scenario's). ``false_incidents``: incidents holding no scenario finding, also per 10⁶
    benign events.
    """
    key = ["source_file", "record_index"]
    labels = truth.select(*key, "scenario")
    tagged = events.join(labels, on=key, how="left").with_columns(pl.col("scenario").fill_null(""))
    scenarios = sorted(s for s in labels["scenario"].unique().to_list() if s)
    per_incident = []
    for inc in incidents:
        got = inc.findings.join(labels, on=key, how="left")["scenario"].fill_null("")
        per_incident.append(got)
    rows = []
    for scenario in scenarios:
        records = tagged.filter(pl.col("scenario") == scenario)
        flagged = findings.join(labels, on=key, how="inner").filter(pl.col("scenario") == scenario)
        holders = [i for i, got in enumerate(per_incident) if (got == scenario).any()]
        covered = 0
        purity = 0.0
        if holders:
            best = max(holders, key=lambda i: int((per_incident[i] == scenario).sum()))
            inc = incidents[best]
            purity = float((per_incident[best] == scenario).mean())
            start = inc.first_seen.timestamp() - margin_s
            end = inc.last_seen.timestamp() + margin_s
            match = pl.lit(False)
            for col, values in inc.entities.items():
                if col in records.columns and col != "ecu":
                    match = match | pl.col(col).is_in(values)
            t = pl.col("time").dt.epoch("ms") / 1000
            covered = records.filter(match & (t >= start) & (t <= end)).height
        rows.append(
            {
                "scenario": scenario,
                "records": records.height,
                "findings": flagged.height,
                "incidents": len(holders),
                "recall": covered / max(records.height, 1),
                "purity": purity,
            }
        )
    false = sum(1 for got in per_incident if not (got != "").any())
    benign = int((tagged["scenario"] == "").sum())
    return {
        "scenarios": rows,
        "incidents": len(incidents),
        "false_incidents": false,
        "benign_events": benign,
        "false_per_million": false / max(benign, 1) * 1e6,
    }

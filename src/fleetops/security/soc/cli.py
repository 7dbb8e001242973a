"""``fleetops soc``: ingest security logs, detect (Sigma + anomaly models), work incidents."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from fleetops import config
from fleetops.cli_support import MultiValueOptions, console, errors, out, progress_bar
from fleetops.core.errors import ConfigError
from fleetops.security.soc.correlate import STATUSES

soc_app = typer.Typer(
    help="Cyber defence centre: ingest security logs, detect, correlate, work incidents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
incidents_app = typer.Typer(
    help="The analyst's incident queue (SQLite by default, PostgreSQL with --dsn).",
    no_args_is_help=True,
)
soc_app.add_typer(incidents_app, name="incidents")

try:  # the Sigma sub-app lives beside us; mount it when present
    from fleetops.security.soc.sigma.cli import rules_app

    soc_app.add_typer(rules_app, name="rules")
except ImportError:  # pragma: no cover - only while the package is assembled
    pass

FormatOption = Annotated[
    str,
    typer.Option("--format", "-f", help="Input format: auto (sniffed per file) or a parser name."),
]
DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="PostgreSQL DSN of the incident store (default: $FLEETOPS_SOC_DSN, else SQLite).",
    ),
]
StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="SQLite file of the incident store (default <data dir>/soc/incidents.sqlite).",
    ),
]
LakeOption = Annotated[
    Path | None,
    typer.Option("--lake", help="Lake folder (default: $FLEETOPS_LAKE or ./fleetops-data/lake)."),
]


def _actor() -> str:
    try:
        return os.environ.get("FLEETOPS_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # no such user in a container
        return "analyst"


def _store(dsn: str | None, path: Path | None) -> Any:
    from fleetops.security.soc.store import IncidentStore

    return IncidentStore.open(dsn, path=path)


def _check_files(files: list[Path]) -> None:
    for f in files:
        if not f.is_file():
            raise ConfigError(f"{f} is not a file")


@soc_app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Log files (plain, .gz or .zip).")],
    fmt: FormatOption = "auto",
    lake: LakeOption = None,
) -> None:
    """Parse security logs into the lake (tables soc_events and soc_dead_letters).

    Prints per file the events parsed and the records dead-lettered (with their reason).
    """

    from fleetops.core.lake import Lake
    from fleetops.security.soc.pipeline import FileCount, parse_inputs

    with errors():
        _check_files(files)
        store = Lake(lake if lake is not None else config.lake_dir())
        rows: list[FileCount] = []
        with progress_bar() as bar:
            task = bar.add_task("parsing", total=len(files))
            for path in files:
                batch, counts = parse_inputs([path], fmt)
                if batch.parsed:
                    store.write("soc_events", batch.events.to_arrow())
                if batch.rejected:
                    store.write("soc_dead_letters", batch.dead_letters.to_arrow())
                rows.extend(counts)
                bar.update(task, advance=1)
        view = Table(title=f"soc ingest → {store.root}")
        for name in ("file", "format", "parsed", "dead-lettered"):
            view.add_column(
                name, justify="right" if name in ("parsed", "dead-lettered") else "left"
            )
        for c in rows:
            view.add_row(c.path, c.format, f"{c.parsed:,}", f"{c.rejected:,}")
        view.add_row(
            "total", "", f"{sum(c.parsed for c in rows):,}", f"{sum(c.rejected for c in rows):,}"
        )
        out.print(view)


@soc_app.command(cls=MultiValueOptions)
def detect(
    inputs: Annotated[list[Path], typer.Option("--input", "-i", help="Log file (repeatable).")],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="Findings, one JSON object a line.")
    ],
    rules: Annotated[
        list[Path] | None,
        typer.Option("--rules", "-r", help="Sigma rule file or folder (repeatable)."),
    ] = None,
    fmt: FormatOption = "auto",
    baseline: Annotated[
        list[Path] | None,
        typer.Option(
            "--baseline",
            help="Benign history the anomaly models learn from (default: the input itself).",
        ),
    ] = None,
    no_models: Annotated[
        bool, typer.Option("--no-models", help="Sigma rules only, no anomaly models.")
    ] = False,
    save: Annotated[
        bool, typer.Option("--save/--no-save", help="Store the incidents for the analysts.")
    ] = True,
    dsn: DsnOption = None,
    store_path: StoreOption = None,
) -> None:
    """Run Sigma rules and the anomaly models over the inputs; write findings as JSONL.

    Each line: finding_uid, time, source (sigma | anomaly), rule_id (Sigma id or model name),
    model, title, techniques (ATT&CK / Auto-ISAC ids), severity_id, severity, domain,
    entities, score, source_file, record_index (1-based line or packet), incident_id,
    evidence. Findings are then correlated into incidents and saved in the store.
    """
    from fleetops.security.soc.pipeline import (
        detect_batch,
        load_ruleset,
        parse_inputs,
        write_findings_jsonl,
    )

    with errors():
        _check_files(inputs + (baseline or []))
        if not rules and no_models:
            raise ConfigError("nothing to detect with: give --rules or drop --no-models")
        ruleset = load_ruleset(rules) if rules else None
        if ruleset is not None:
            console.print(
                f"{len(ruleset.rules)} rules loaded, {len(ruleset.refused)} refused",
                highlight=False,
            )
        with progress_bar() as bar:
            task = bar.add_task("parsing", total=len(inputs))
            batch, counts = parse_inputs(inputs, fmt, on_file=lambda _: bar.update(task, advance=1))
        history = parse_inputs(baseline, fmt)[0].events if baseline else None
        with console.status("detecting"):
            findings, incidents = detect_batch(
                batch, rules=ruleset, history=history, models=[] if no_models else None
            )
        incident_of = {u: inc.incident_id for inc in incidents for u in inc.finding_uids}
        written = write_findings_jsonl(findings, out_path, incident_of)
        for c in counts:
            console.print(
                f"{c.path}: {c.parsed:,} events ({c.format}), {c.rejected:,} dead-lettered",
                highlight=False,
            )
        out.print(f"{written:,} findings → {out_path}; {len(incidents)} incidents")
        if incidents:
            view = Table(title="incidents")
            for name in ("id", "priority", "severity", "findings", "domains", "title"):
                view.add_column(name)
            for inc in incidents:
                view.add_row(
                    inc.incident_id,
                    inc.priority_label,
                    str(inc.severity_id),
                    str(inc.findings.height),
                    ",".join(inc.domains),
                    inc.title,
                )
            out.print(view)
        if save and incidents:
            with _store(dsn, store_path) as store:
                saved = store.save(incidents)
            console.print(
                f"incident store {store.where}: {saved['new']} new, {saved['updated']} updated",
                highlight=False,
            )


@incidents_app.command("list")
def list_cmd(
    status: Annotated[
        str | None, typer.Option(help=f"Only this status ({', '.join(STATUSES)}).")
    ] = None,
    assignee: Annotated[str | None, typer.Option(help="Only incidents assigned to them.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    dsn: DsnOption = None,
    store_path: StoreOption = None,
) -> None:
    """Incidents, highest triage priority first."""
    from fleetops.security.soc.correlate import priority_label

    with errors():
        if status is not None and status not in STATUSES:
            raise ConfigError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
        with _store(dsn, store_path) as store:
            rows = store.incidents(status=status, assignee=assignee, limit=limit)
        if as_json:
            out.print_json(orjson.dumps(rows).decode())
            return
        view = Table(title="incidents")
        for name in ("id", "priority", "severity", "status", "assignee", "first seen", "title"):
            view.add_column(name, overflow="fold")
        for r in rows:
            view.add_row(
                r["incident_id"],
                priority_label(r["priority"]),
                str(r["severity_id"]),
                r["status"],
                r["assignee"] or "",
                r["first_seen"][:19],
                r["title"],
            )
        out.print(view)


@incidents_app.command("show")
def show_cmd(
    incident_id: Annotated[str, typer.Argument(help="Incident id (INC-…).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
    dsn: DsnOption = None,
    store_path: StoreOption = None,
) -> None:
    """One incident: summary, kill chain, timeline of alerts, comments and history."""
    with errors():
        with _store(dsn, store_path) as store:
            inc = store.get(incident_id)
        if as_json:
            out.print_json(orjson.dumps(inc).decode())
            return
        summary = inc["summary"]
        out.print(f"[bold]{inc['incident_id']}[/] {inc['title']}", highlight=False)
        out.print(
            f"severity {inc['severity_id']} · priority {summary['priority_label']} "
            f"({inc['priority']:.1f}) · status {inc['status']} · assignee "
            f"{inc['assignee'] or '-'} · {inc['first_seen']} → {inc['last_seen']}",
            highlight=False,
        )
        for col, values in summary["entities"].items():
            shown = ", ".join(values[:8]) + (f" … (+{len(values) - 8})" if len(values) > 8 else "")
            out.print(f"  {col}: {shown}", highlight=False)
        chain = Table(title="kill chain")
        for name in ("tactic", "techniques", "first seen"):
            chain.add_column(name)
        for stage in summary["kill_chain"]:
            chain.add_row(stage["tactic"], ", ".join(stage["techniques"]), stage["first_seen"][:19])
        out.print(chain)
        timeline = Table(title="timeline")
        for name in ("time", "source", "rule", "severity", "×", "title"):
            timeline.add_column(name, overflow="fold")
        for a in inc["alerts"]:
            timeline.add_row(
                a["time"][:19],
                a["source"] or "",
                a["rule_id"] or "",
                str(a["severity_id"]),
                str(a["duplicates"]),
                a["title"] or "",
            )
        out.print(timeline)
        for c in inc["comments"]:
            out.print(
                f"[bold]{c['author']}[/] {c['created_at'][:19]}: {c['body']}", highlight=False
            )
        for h in inc["history"]:
            console.print(
                f"{h['at'][:19]} {h['actor']} {h['action']}: {h['old_value'] or ''} → "
                f"{h['new_value'] or ''}",
                highlight=False,
            )


@incidents_app.command("assign")
def assign_cmd(
    incident_id: Annotated[str, typer.Argument(help="Incident id.")],
    assignee: Annotated[str, typer.Argument(help="Who works it.")],
    dsn: DsnOption = None,
    store_path: StoreOption = None,
) -> None:
    """Assign an incident to an analyst."""
    with errors(), _store(dsn, store_path) as store:
        store.assign(incident_id, assignee, actor=_actor())
        out.print(f"{incident_id} assigned to {assignee}")


@incidents_app.command("status")
def status_cmd(
    incident_id: Annotated[str, typer.Argument(help="Incident id.")],
    status: Annotated[str, typer.Argument(help=f"One of {', '.join(STATUSES)}.")],
    dsn: DsnOption = None,
    store_path: StoreOption = None,
) -> None:
    """Move an incident along: new, acknowledged, in_progress, resolved, false_positive."""
    with errors(), _store(dsn, store_path) as store:
        store.set_status(incident_id, status, actor=_actor())
        out.print(f"{incident_id} is now {store.get(incident_id)['status']}")


@incidents_app.command("comment")
def comment_cmd(
    incident_id: Annotated[str, typer.Argument(help="Incident id.")],
    text: Annotated[str, typer.Argument(help="The comment.")],
    dsn: DsnOption = None,
    store_path: StoreOption = None,
) -> None:
    """Add a comment to an incident."""
    with errors(), _store(dsn, store_path) as store:
        store.comment(incident_id, text, author=_actor())
        out.print(f"comment added to {incident_id}")

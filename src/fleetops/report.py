"""A small self-contained HTML report of what the lake holds, with plots.

Everything comes from SQL over the lake, so the report describes any lake — the demo's,
or one filled by MQTT ingest — not the objects of one run. Sections whose tables are
empty are left out. Plots are PNG embedded in the page: one file, opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # no display: render to memory

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fleetops.core.lake import Lake

SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
LV_VOLTAGE = "Vehicle.LowVoltageBattery.CurrentVoltage"
COOLANT = "Vehicle.Powertrain.ElectricMotor.CoolantTemperature"


@dataclass
class Section:
    title: str
    text: str = ""
    figures: list[str] = field(default_factory=list)  # base64 PNGs
    tables: list[tuple[list[str], list[list[Any]]]] = field(default_factory=list)


def png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot(draw: Callable[[Axes], None], size: tuple[float, float] = (9, 3.2)) -> str:
    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    ax.grid(alpha=0.3)
    return png(fig)


def _rows(lake: Lake, sql: str) -> list[dict[str, Any]]:
    return list(lake.query(sql).to_pylist())


def fleet_section(lake: Lake) -> Section | None:
    stats = _rows(
        lake,
        "SELECT count(*) AS values, count(DISTINCT vin) AS vehicles, "
        "count(DISTINCT signal) AS signals, min(ts) AS first, max(ts) AS last FROM signals",
    )[0]
    if not stats["values"]:
        return None
    section = Section(
        "Fleet telemetry",
        f"{stats['values']:,} signal values from {stats['vehicles']:,} vehicles over "
        f"{stats['signals']} VSS signals, {stats['first']:%Y-%m-%d %H:%M} – "
        f"{stats['last']:%Y-%m-%d %H:%M} UTC.",
    )
    models = _rows(
        lake,
        "SELECT model, region, count(*) AS vehicles FROM vehicles GROUP BY ALL ORDER BY ALL",
    )
    if models:
        section.tables.append(
            (
                ["model", "region", "vehicles"],
                [[m["model"], m["region"], m["vehicles"]] for m in models],
            )
        )
    soc = _rows(
        lake,
        f"""
        WITH chosen AS (SELECT DISTINCT vin FROM signals WHERE signal = '{SOC}' ORDER BY vin LIMIT 4)
        SELECT vin, time_bucket(INTERVAL 10 MINUTE, ts) AS t, avg(value) AS v
        FROM signals WHERE signal = '{SOC}' AND vin IN (SELECT vin FROM chosen)
        GROUP BY ALL ORDER BY vin, t
        """,
    )
    if soc:

        def draw_soc(ax: Axes) -> None:
            for vin in sorted({r["vin"] for r in soc}):
                points = [r for r in soc if r["vin"] == vin]
                ax.plot([p["t"] for p in points], [p["v"] for p in points], lw=1, label=vin)
            ax.set_ylabel("state of charge, %")
            ax.set_title("Traction battery state of charge: driving drains it, charging refills it")
            ax.legend(fontsize=7, ncol=4)

        section.figures.append(_plot(draw_soc))
    distance = _rows(
        lake,
        """
        SELECT vin, date_trunc('day', ts) AS day, max(value) - min(value) AS km
        FROM signals WHERE signal = 'Vehicle.TraveledDistance' GROUP BY ALL
        """,
    )
    if distance:

        def draw_distance(ax: Axes) -> None:
            ax.hist([d["km"] for d in distance], bins=40, color="#4C72B0")
            ax.set_xlabel("km driven per vehicle-day")
            ax.set_ylabel("vehicle-days")
            ax.set_title("Daily distance across the fleet")

        section.figures.append(_plot(draw_distance))
    return section


def health_section(lake: Lake) -> Section | None:
    failures = _rows(
        lake,
        "SELECT component, count(*) AS n, min(failure_ts) AS first FROM failures GROUP BY 1 ORDER BY 2 DESC",
    )
    dtcs = _rows(
        lake,
        "SELECT code, any_value(description) AS description, count(*) AS n, "
        "count(DISTINCT vin) AS vehicles FROM dtcs GROUP BY code ORDER BY n DESC LIMIT 12",
    )
    if not failures and not dtcs:
        return None
    section = Section(
        "Vehicle health",
        "Component failures the simulator injected (ground truth) and the diagnostic trouble "
        "codes vehicles raised.",
    )
    if failures:
        section.tables.append(
            (
                ["component", "vehicles failing", "first failure"],
                [
                    [f["component"], f["n"], f"{f['first']:%Y-%m-%d %H:%M}" if f["first"] else ""]
                    for f in failures
                ],
            )
        )
    if dtcs:

        def draw_dtcs(ax: Axes) -> None:
            labels = [f"{d['code']} {(d['description'] or '')[:38]}" for d in dtcs][::-1]
            ax.barh(labels, [d["n"] for d in dtcs][::-1], color="#DD8452")
            ax.set_xlabel("occurrences")
            ax.set_title("Most frequent DTCs")

        section.figures.append(_plot(draw_dtcs, (9, 0.35 * len(dtcs) + 1)))
    precursor = _precursor_plot(lake)
    if precursor:
        section.figures.append(precursor)
    return section


def _precursor_plot(lake: Lake) -> str | None:
    """12 V voltage of a vehicle whose 12 V battery failed against a healthy one."""
    failed = _rows(
        lake,
        "SELECT vin, onset_ts, failure_ts FROM failures WHERE component ILIKE '%12v%' "
        "OR component ILIKE '%lv_battery%' OR component ILIKE '%low_voltage%' ORDER BY vin LIMIT 1",
    )
    if not failed:
        return None
    bad = failed[0]
    healthy = _rows(
        lake,
        "SELECT vin FROM vehicles WHERE vin NOT IN (SELECT vin FROM failures) ORDER BY vin LIMIT 1",
    )
    vins = [bad["vin"]] + [h["vin"] for h in healthy]
    series = _rows(
        lake,
        f"""
        SELECT vin, time_bucket(INTERVAL 1 HOUR, ts) AS t, min(value) AS v FROM signals
        WHERE signal = '{LV_VOLTAGE}' AND vin IN ({", ".join(f"'{v}'" for v in vins)})
        GROUP BY ALL ORDER BY t
        """,
    )
    if not series:
        return None

    def draw(ax: Axes) -> None:
        for vin, label in zip(vins, ["12 V battery failing", "healthy"], strict=False):
            points = [s for s in series if s["vin"] == vin]
            ax.plot(
                [p["t"] for p in points], [p["v"] for p in points], lw=1, label=f"{vin} ({label})"
            )
        if bad["onset_ts"] is not None:
            ax.axvline(bad["onset_ts"], color="orange", ls="--", label="wear onset")
        if bad["failure_ts"] is not None:
            ax.axvline(bad["failure_ts"], color="red", ls="--", label="failure")
        ax.set_ylabel("hourly minimum, V")
        ax.set_title("12 V battery voltage: the precursor a maintenance model learns from")
        ax.legend(fontsize=7)

    return _plot(draw)


def ingest_section(lake: Lake) -> Section | None:
    reasons = _rows(
        lake,
        "SELECT regexp_replace(reason, ':.*|''.*', '') AS reason, count(*) AS n "
        "FROM dead_letter GROUP BY 1 ORDER BY 2 DESC",
    )
    if not reasons:
        return None
    return Section(
        "Ingest quality",
        "Messages or signals that could not become lake rows; each is kept in the "
        "dead_letter table with its raw payload.",
        tables=[(["reason", "count"], [[r["reason"], r["n"]] for r in reasons])],
    )


def can_section(lake: Lake) -> Section | None:
    has_label = "label" in lake.query("SELECT * FROM can_frames LIMIT 0").column_names
    if not has_label:
        return None
    load = lake.query(
        """
        SELECT floor(epoch(ts) * 10) / 10 AS t, coalesce(nullif(label, ''), 'normal') AS kind,
               count(*) AS frames
        FROM can_frames GROUP BY ALL ORDER BY t
        """
    ).to_pylist()
    if not load:
        return None
    section = Section(
        "In-vehicle CAN and the intrusion detector",
        "Labelled CAN traffic in the lake: periodic messages from the DBC with jitter, alive "
        "counters and CRCs, and the injected attacks, labelled per frame. The last column is "
        "what the intrusion detector (trained on attack-free drives of the same car, with "
        "the DBC) reported during each attack.",
    )
    t0 = min(r["t"] for r in load)

    def draw(ax: Axes) -> None:
        for kind in sorted({r["kind"] for r in load}, key=lambda k: (k != "normal", k)):
            points = [r for r in load if r["kind"] == kind]
            ax.plot(
                [p["t"] - t0 for p in points],
                [p["frames"] * 10 for p in points],
                lw=0.8,
                label=kind,
            )
        ax.set_xlabel("seconds")
        ax.set_ylabel("frames/s (100 ms bins)")
        ax.set_yscale("symlog")
        ax.set_title("Bus load by frame label")
        ax.legend(fontsize=7, ncol=4)

    section.figures.append(_plot(draw))
    if "can_attacks" in lake.tables():
        # What the intrusion detector said during each attack (until 1 s after it), if it ran.
        detected = (
            """(SELECT string_agg(DISTINCT i.attack, ', ' ORDER BY i.attack)
                       || ' (' || count(*) || CASE WHEN count(*) = 1 THEN ' alert' ELSE ' alerts' END
                       || CASE WHEN count(DISTINCT i.signal) = 1
                               THEN '; signal ' || any_value(i.signal) ELSE '' END || ')'
                FROM ids_alerts i
                WHERE i.time <= a."end" + INTERVAL 1 SECOND AND i.last_time >= a.start)"""
            if "ids_alerts" in lake.tables()
            else "NULL"
        )
        attacks = lake.query(
            f"""SELECT attack, message, signal, start, "end", frames, {detected} AS ids
                FROM can_attacks a ORDER BY start"""
        ).to_pylist()
        section.tables.append(
            (
                ["attack", "message", "signal", "start", "end", "frames", "IDS alerts"],
                [
                    [
                        a["attack"],
                        a["message"] or "",
                        a["signal"] or "",
                        f"{a['start']:%H:%M:%S}",
                        f"{a['end']:%H:%M:%S}",
                        a["frames"],
                        a["ids"] or "—",
                    ]
                    for a in attacks
                ],
            )
        )
    return section


def maintenance_section(lake: Lake) -> Section | None:
    """Ranked work orders and the fleet's risk over time, from ``fleetops maintenance predict``."""
    if "work_orders" not in lake.tables() and "rul_predictions" not in lake.tables():
        return None
    section = Section(
        "Predictive maintenance",
        "Ranked work orders from the fleet risk models (calibrated probability of failure "
        "within the horizon; evidence = the model's top drivers from LightGBM contributions).",
    )
    if "work_orders" in lake.tables():
        orders = lake.query_pl("SELECT * FROM work_orders ORDER BY rank LIMIT 25")
        section.tables.append(
            (
                ["rank", "vehicle", "component", "due by", "confidence", "evidence"],
                [
                    [
                        r["rank"],
                        r["vin"],
                        r["component"],
                        f"{r['due_by']:%Y-%m-%d %H:%M}",
                        f"{r['confidence']:.0%}",
                        r["evidence"],
                    ]
                    for r in orders.iter_rows(named=True)
                ],
            )
        )
    if "rul_predictions" in lake.tables():
        # Imported here: only lakes scored by the maintenance models need it.
        from fleetops.maintenance.actions import risk_over_time_figure

        scores = lake.query_pl(
            "SELECT vin, ts AS t_end, component, horizon_h, p_fail FROM rul_predictions"
        )
        if scores.height:
            section.figures.append(png(risk_over_time_figure(scores)))
    return section


SECTIONS: list[Callable[[Lake], Section | None]] = [
    fleet_section,
    health_section,
    maintenance_section,
    ingest_section,
    can_section,
]


def write_report(
    lake: Lake,
    path: Path,
    *,
    title: str = "fleetops report",
    extra: list[Section] | None = None,
) -> Path:
    """Render the report for ``lake`` to ``path`` (one HTML file)."""
    sections = [s for s in (build(lake) for build in SECTIONS) if s is not None]
    sections.extend(extra or [])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_html(title, sections), encoding="utf-8")
    return path


def _html(title: str, sections: list[Section]) -> str:
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font:14px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;"
        "color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}"
        "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;"
        "padding:.25em .6em;text-align:left}img{max-width:100%}</style>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by fleetops.</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        for header, rows in section.tables:
            parts.append(
                "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
            )
            for row in rows:
                parts.append(
                    "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                )
            parts.append("</table>")
        for figure in section.figures:
            parts.append(
                f'<img alt="{html.escape(section.title)} plot" src="data:image/png;base64,{figure}">'
            )
    parts.append("</html>")
    return "\n".join(parts)

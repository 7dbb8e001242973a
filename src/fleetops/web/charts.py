"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, fast for any fleet.

Each function takes already aggregated data (a few hundred points at most) and returns
markup safe to embed; hovering a mark shows its value (SVG ``<title>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

HEALTH_COLOURS = {"ok": "#2e7d32", "watch": "#f9a825", "fault": "#c62828", "offline": "#78909c"}
PALETTE = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#558b2f", "#4e342e", "#37474f"]


def _svg(width: int, height: int, body: str, label: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def hbar(
    rows: Sequence[tuple[str, float]],
    *,
    label: str,
    colour: str = "#1565c0",
    width: int = 560,
    unit: str = "",
    colours: Sequence[str] | None = None,
) -> Markup:
    """Horizontal bars, one per (label, value)."""
    if not rows:
        return Markup('<p class="empty">no data</p>')
    bar_h, gap, left = 18, 6, 190
    height = len(rows) * (bar_h + gap) + gap
    top = max((v for _, v in rows), default=0.0) or 1.0
    parts = []
    for i, (name, value) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = (width - left - 70) * value / top
        fill = colours[i] if colours else colour
        text = f"{name}: {_fmt(value)}{unit}"
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" class="lbl">'
            f"{escape(name[:30])}</text>"
            f'<rect x="{left}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" fill="{fill}">'
            f"<title>{escape(text)}</title></rect>"
            f'<text x="{left + w + 4:.1f}" y="{y + 13}" class="val">{_fmt(value)}{unit}</text>'
        )
    return _svg(width, height, "".join(parts), label)


def stacked(
    counts: dict[str, int], *, label: str, colours: dict[str, str] | None = None, width: int = 560
) -> Markup:
    """One bar split by category (e.g. vehicles by health), with a legend."""
    colours = colours or HEALTH_COLOURS
    total = sum(counts.values()) or 1
    x, parts, legend = 0.0, [], []
    for i, (name, n) in enumerate(counts.items()):
        w = width * n / total
        fill = colours.get(name, PALETTE[i % len(PALETTE)])
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="26" fill="{fill}">'
            f"<title>{escape(name)}: {n:,} ({100 * n / total:.1f} %)</title></rect>"
        )
        x += w
        lx = i * (width // max(len(counts), 1))
        legend.append(
            f'<rect x="{lx}" y="36" width="12" height="12" fill="{fill}"/>'
            f'<text x="{lx + 16}" y="46" class="lbl">{escape(name)} {n:,}</text>'
        )
    return _svg(width, 54, "".join(parts + legend), label)


def line(
    series: Sequence[tuple[str, Sequence[tuple[datetime, float, float, float]]]],
    *,
    label: str,
    unit: str = "",
    width: int = 640,
    height: int = 200,
) -> Markup:
    """Time series: mean as a line, min-max as a band; x is time, shared by all series."""
    points = [p for _, s in series for p in s]
    if not points:
        return Markup('<p class="empty">no samples in this window</p>')
    left, right, top, bottom = 52, 10, 10, 24
    t0 = min(p[0] for p in points).timestamp()
    t1 = max(p[0] for p in points).timestamp()
    lo = min(p[2] for p in points)
    hi = max(p[3] for p in points)
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    span_t = (t1 - t0) or 1.0
    pw, ph = width - left - right, height - top - bottom

    def x(t: datetime) -> float:
        return left + pw * (t.timestamp() - t0) / span_t

    def y(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    parts = [
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" class="axis"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        v = lo + (hi - lo) * frac
        parts.append(
            f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" class="tick">'
            f"{_fmt(v)}</text>"
        )
    for frac in (0.0, 0.5, 1.0):
        t = datetime.fromtimestamp(t0 + span_t * frac, tz=points[0][0].tzinfo)
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        parts.append(
            f'<text x="{left + pw * frac:.1f}" y="{height - 6}" text-anchor="{anchor}" '
            f'class="tick">{t:%m-%d %H:%M}</text>'
        )
    for i, (name, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        if not pts:
            continue
        xs = [f"{x(p[0]):.1f}" for p in pts]  # once a point: datetime.timestamp() is slow
        band = (
            " ".join(f"{px},{y(p[3]):.1f}" for px, p in zip(xs, pts, strict=True))
            + " "
            + " ".join(
                f"{px},{y(p[2]):.1f}" for px, p in zip(reversed(xs), reversed(pts), strict=True)
            )
        )
        path = " ".join(f"{px},{y(p[1]):.1f}" for px, p in zip(xs, pts, strict=True))
        last = pts[-1]
        parts.append(
            f'<polygon points="{band}" fill="{colour}" opacity="0.15"/>'
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.4">'
            f"<title>{escape(name)}: last {_fmt(last[1])}{escape(unit)}</title></polyline>"
        )
    return _svg(width, height, "".join(parts), label)


def region_map(
    bins: Sequence[dict[str, float | str | int]],
    regions: Sequence[dict[str, float | str | int | None]],
    *,
    label: str,
    width: int = 640,
    height: int = 360,
) -> Markup:
    """Vehicles on an equirectangular map (0.1° bins, coloured by health) with each
    region's centroid, sized by its vehicle count and labelled with its fault share."""
    located = [b for b in bins if b.get("lat") is not None and b.get("lon") is not None]
    if not located:
        return Markup('<p class="empty">no vehicle positions in the lake</p>')
    lats = [float(b["lat"]) for b in located]
    lons = [float(b["lon"]) for b in located]
    pad = 0.5
    la0, la1, lo0, lo1 = min(lats) - pad, max(lats) + pad, min(lons) - pad, max(lons) + pad
    scale = min((width - 20) / (lo1 - lo0), (height - 20) / (la1 - la0))

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return 10 + (lon - lo0) * scale, 10 + (la1 - lat) * scale

    parts = [f'<rect width="{width}" height="{height}" class="mapbg"/>']
    for b in located:
        px, py = xy(float(b["lat"]), float(b["lon"]))
        n = int(b["vehicles"])
        r = 1.5 + min(n, 50) ** 0.5
        colour = HEALTH_COLOURS.get(str(b["health"]), "#555")
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{r:.1f}" fill="{colour}" opacity="0.55">'
            f"<title>{n} vehicle(s) {escape(str(b['health']))} near "
            f"{float(b['lat']):.1f}, {float(b['lon']):.1f}</title></circle>"
        )
    biggest = max((int(r["vehicles"] or 0) for r in regions), default=1) or 1
    for reg in regions:
        if reg.get("lat") is None or reg.get("lon") is None:
            continue
        px, py = xy(float(reg["lat"] or 0), float(reg["lon"] or 0))
        n = int(reg["vehicles"] or 0)
        faults = int(reg.get("fault") or 0)
        r = 8 + 22 * (n / biggest) ** 0.5
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{r:.1f}" class="region">'
            f"<title>{escape(str(reg['region']))}: {n:,} vehicles, {faults:,} with a fault"
            f"</title></circle>"
            f'<text x="{px:.1f}" y="{py - r - 4:.1f}" text-anchor="middle" class="maplbl">'
            f"{escape(str(reg['region']))} · {n:,} · {100 * faults / max(n, 1):.0f} % fault</text>"
        )
    return _svg(width, height, "".join(parts), label)


def timeline(
    events: Sequence[tuple[str, str, int]],
    *,
    label: str,
    width: int = 900,
) -> Markup:
    """Alerts on a time axis, one lane per distinct title, dot colour by severity (1-6)."""
    parsed: list[tuple[datetime, str, int]] = []
    for text, title, severity in events:
        try:
            parsed.append((datetime.fromisoformat(text.replace("Z", "+00:00")), title, severity))
        except ValueError:
            continue
    if not parsed:
        return Markup('<p class="empty">no alerts</p>')
    lanes = list(dict.fromkeys(t for _, t, _ in sorted(parsed)))[:20]
    left, lane_h, top = 230, 22, 8
    height = top + lane_h * len(lanes) + 26
    t0 = min(p[0] for p in parsed).timestamp()
    t1 = max(p[0] for p in parsed).timestamp()
    span = (t1 - t0) or 1.0
    colours = {1: "#90a4ae", 2: "#64b5f6", 3: "#f9a825", 4: "#ef6c00", 5: "#c62828", 6: "#6a1b9a"}
    parts = []
    for i, lane in enumerate(lanes):
        y = top + i * lane_h + lane_h / 2
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="lbl">{escape(lane[:34])}</text>'
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" class="axis" opacity="0.3"/>'
        )
    for when, title, severity in parsed:
        if title not in lanes:
            continue
        x = left + (width - left - 20) * (when.timestamp() - t0) / span
        y = top + lanes.index(title) * lane_h + lane_h / 2
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colours.get(severity, "#555")}">'
            f"<title>{escape(title)} · severity {severity} · {when:%Y-%m-%d %H:%M:%S}</title></circle>"
        )
    first = datetime.fromtimestamp(t0, tz=parsed[0][0].tzinfo)
    last = datetime.fromtimestamp(t1, tz=parsed[0][0].tzinfo)
    parts.append(
        f'<text x="{left}" y="{height - 6}" class="tick">{first:%m-%d %H:%M:%S}</text>'
        f'<text x="{width - 10}" y="{height - 6}" text-anchor="end" class="tick">{last:%m-%d %H:%M:%S}</text>'
    )
    return _svg(width, height, "".join(parts), label)

"""Sigma speed: columnar engine against the per-event Python matcher on the same events.

Rules: every SigmaHQ rule in ``shared/data/sigma_rules`` (web, linux, network, windows)
plus the fleetops starter pack. Events: the real web access log and the OTRF Windows
recordings, repeated to a large batch. Throughput is reported per wall second and per CPU
second (``events/s/core``: CPU time of this process, all threads, so it is per core even
where Polars uses several threads).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from fleetops.core.ocsf import EventBatch
from fleetops.security.soc.parsers.bench import timed
from fleetops.security.soc.parsers.windows import parse_windows_json
from fleetops.security.soc.sigma.engine import NaiveMatcher, RuleSet

PACK = Path(__file__).resolve().parents[1] / "rules"


def sample_events(shared_data: Path, copies: int = 10) -> EventBatch:
    """Real web access and Windows events, ``copies`` times over."""
    parts: list[EventBatch] = []
    web = shared_data / "web_access" / "apache_logs"
    if web.is_file():
        from fleetops.security.soc.parsers.access import parse_access_combined

        parts.append(
            parse_access_combined(web.read_text(encoding="utf-8", errors="replace"), str(web))
        )
    otrf = shared_data / "attack_telemetry" / "otrf_security_datasets"
    for archive in sorted(otrf.rglob("*.zip")):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                parts.append(parse_windows_json(zf.read(name).decode("utf-8"), str(archive)))
    one = EventBatch.concat(parts)
    return EventBatch.concat([one] * copies)


def bench_sigma(
    shared_data: Path, copies: int = 10, naive_events: int = 20_000
) -> list[dict[str, Any]]:
    """Rows for the SOC bench table: Sigma engine and naive matcher, same rules and events."""
    rules_dir = shared_data / "sigma_rules" / "rules"
    paths = [rules_dir, PACK] if PACK.is_dir() else [rules_dir]
    rules = RuleSet.load(paths)
    batch = sample_events(shared_data, copies)
    n = batch.events.height
    rules.match_rows(batch)  # warm up (regex compilation, thread pool)
    wall, cpu = timed(lambda: rules.evaluate(batch), repeat=3)
    head = EventBatch(batch.events.head(naive_events), batch.fields.head(naive_events))
    naive = NaiveMatcher(rules)
    n_wall, n_cpu = timed(lambda: naive.match_rows(head))
    same = naive.match_rows(head) == rules.match_rows(head)
    m = head.events.height
    common = {"rules": len(rules.rules), "refused": len(rules.refused)}
    return [
        {
            "what": "Sigma rules, columnar (Polars)",
            "events": n,
            **common,
            "seconds": round(wall, 3),
            "events_per_s": round(n / wall),
            "events_per_cpu_s": round(n / cpu) if cpu > 0 else None,
        },
        {
            "what": "Sigma rules, naive per-event Python",
            "events": m,
            **common,
            "seconds": round(n_wall, 3),
            "events_per_s": round(m / n_wall),
            "events_per_cpu_s": round(m / n_cpu) if n_cpu > 0 else None,
            "agrees_with_columnar": same,
        },
    ]


if __name__ == "__main__":  # pragma: no cover
    import sys

    for row in bench_sigma(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data")):
        print(row)

"""Parsing speed per format, and parse + Sigma end to end, for the SOC bench (``bench/soc.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

from fleetops.core.ocsf import EventBatch
from fleetops.security.soc.parsers.api import parse_bytes

# (format, sample files under the shared data folder, copies concatenated to time a
# realistic volume rather than per-call overhead)
_SAMPLES: Final[tuple[tuple[str, tuple[str, ...], int], ...]] = (
    ("syslog", ("loghub/Linux/Linux_2k.log", "loghub/OpenSSH/OpenSSH_2k.log"), 25),
    ("access-combined", ("web_access/apache_logs",), 5),
    ("apache-error", ("loghub/Apache/Apache_2k.log",), 25),
    ("proxy", ("loghub/Proxifier/Proxifier_2k.log",), 25),
    ("modbus-pcap", ("ot_modbus/characterization_modbus_6RTU_with_operate.pcap",), 1),
)
# End to end: the real web access log and the loghub Linux + OpenSSH logs, with the
# SigmaHQ rules for those log sources and the fleetops pack.
_E2E_SAMPLES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("access-combined", ("web_access/apache_logs",)),
    ("syslog", ("loghub/Linux/Linux_2k.log", "loghub/OpenSSH/OpenSSH_2k.log")),
)
_E2E_RULES: Final = ("sigma_rules/rules/web", "sigma_rules/rules/linux")
PACK: Final = Path(__file__).resolve().parents[1] / "rules"


def _sample(shared_data: Path, names: tuple[str, ...], copies: int) -> bytes | None:
    paths = [shared_data / name for name in names]
    if not all(p.is_file() for p in paths):
        return None
    return b"".join(p.read_bytes().rstrip(b"\r\n") + b"\n" for p in paths) * copies


def timed(call: Callable[[], object], repeat: int = 1) -> tuple[float, float]:
    """Best (wall seconds, CPU seconds of this process, all threads) over ``repeat`` runs."""
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def bench_parsers(shared_data: Path, *, repeat: int = 3) -> list[dict[str, Any]]:
    """Events/s per format (best of ``repeat``) on the samples present under ``shared_data``.

    Line formats are timed on several copies of their sample concatenated (so the time is
    per line, not per call); a format whose sample is absent is left out. ``events_per_s``
    is per wall second, ``events_per_cpu_s`` per CPU second (all threads).
    """
    results: list[dict[str, Any]] = []
    for fmt, names, copies in _SAMPLES:
        if fmt == "modbus-pcap":  # binary: the capture as it is
            path = shared_data / names[0]
            data = path.read_bytes() if path.is_file() else None
        else:
            data = _sample(shared_data, names, copies)
        if data is None:
            continue
        events = parse_bytes(data, fmt, f"bench:{fmt}").parsed
        wall, cpu = timed(partial(parse_bytes, data, fmt, f"bench:{fmt}"), repeat)
        results.append(
            {
                "format": fmt,
                "events": events,
                "seconds": round(wall, 4),
                "events_per_s": round(events / wall) if wall > 0 else 0,
                "events_per_cpu_s": round(events / cpu) if cpu > 0 else 0,
            }
        )
    return results


def bench_end_to_end(
    shared_data: Path, *, copies: int = 10, naive_events: int = 10_000, repeat: int = 3
) -> dict[str, Any] | None:
    """Parse + Sigma over real logs against the same parse + the naive per-event matcher.

    Events: the web access log and the loghub Linux + OpenSSH logs, each ``copies`` times
    over, parsed from bytes. Rules: SigmaHQ's ``web`` and ``linux`` rules and the pack.
    Ours is parse + :meth:`RuleSet.evaluate` over the whole batch; the baseline parses the
    same way and runs :class:`NaiveMatcher` (timed on ``naive_events`` of the events, half
    of each log), so its per-event CPU time is parse's plus the naive matcher's. ``None``
    when the logs or the rules are absent.
    """
    from fleetops.security.soc.sigma.engine import NaiveMatcher, RuleSet

    inputs = [(fmt, _sample(shared_data, names, copies)) for fmt, names in _E2E_SAMPLES]
    rule_dirs = [shared_data / d for d in _E2E_RULES]
    if any(data is None for _, data in inputs) or not all(d.is_dir() for d in rule_dirs):
        return None
    rules = RuleSet.load([*rule_dirs, PACK])

    def parse() -> list[EventBatch]:
        return [parse_bytes(data or b"", fmt, f"bench:{fmt}") for fmt, data in inputs]

    def end_to_end() -> None:
        rules.evaluate(EventBatch.concat(parse()))

    parts = parse()
    batch = EventBatch.concat(parts)
    n = batch.parsed
    rules.match_rows(batch)  # warm up: regex compilation, thread pool
    wall, cpu = timed(end_to_end, repeat)
    _, parse_cpu = timed(parse, repeat)
    per_part = naive_events // len(parts)
    head = EventBatch.concat(
        [EventBatch(p.events.head(per_part), p.fields.head(per_part)) for p in parts]
    )
    naive = NaiveMatcher(rules)
    _, naive_cpu = timed(lambda: naive.match_rows(head), 1)
    m = head.parsed
    naive_per_event = parse_cpu / n + naive_cpu / m
    return {
        "rules": len(rules.rules),
        "refused": len(rules.refused),
        "events": n,
        "seconds": round(wall, 3),
        "events_per_s": round(n / wall),
        "events_per_cpu_s": round(n / cpu),
        "parse_events_per_cpu_s": round(n / parse_cpu),
        "sigma_events_per_cpu_s": round(n / max(cpu - parse_cpu, 1e-9)),
        "naive_events": m,
        "naive_events_per_cpu_s": round(1 / naive_per_event),
        "ratio": round(naive_per_event / (cpu / n), 1),
        "agrees_with_columnar": naive.match_rows(head) == rules.match_rows(head),
    }

"""Parsing speed per format on the public samples, for the SOC bench (``bench/soc.py``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

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


def bench_parsers(shared_data: Path, *, repeat: int = 3) -> list[dict[str, Any]]:
    """Events/s per format (best of ``repeat``) on the samples present under ``shared_data``.

    Line formats are timed on several copies of their sample concatenated (so the time is
    per line, not per call); a format whose sample is absent is left out.
    """
    results: list[dict[str, Any]] = []
    for fmt, names, copies in _SAMPLES:
        paths = [shared_data / name for name in names]
        if not all(p.is_file() for p in paths):
            continue
        if fmt == "modbus-pcap":
            data = paths[0].read_bytes()
        else:
            one = b"".join(p.read_bytes().rstrip(b"\r\n") + b"\n" for p in paths)
            data = one * copies
        best = float("inf")
        events = 0
        for _ in range(repeat):
            start = time.perf_counter()
            batch = parse_bytes(data, fmt, f"bench:{fmt}")
            best = min(best, time.perf_counter() - start)
            events = batch.parsed
        results.append(
            {
                "format": fmt,
                "events": events,
                "seconds": round(best, 4),
                "events_per_s": round(events / best) if best > 0 else 0,
            }
        )
    return results

"""Log and event parsers of the cyber defence centre: real formats → OCSF :class:`EventBatch`.

``parse_file(path, fmt="auto")`` handles plain, ``.gz`` and ``.zip`` files; every record of
the input becomes an event (with its native fields, for Sigma) or a dead letter with the
reason. Formats: see :data:`FORMATS` and docs/soc-parsers.md.
"""

from fleetops.security.soc.parsers.api import (
    FORMATS,
    detect_format,
    parse_bytes,
    parse_file,
    parse_text,
)
from fleetops.security.soc.parsers.bench import bench_end_to_end, bench_parsers

__all__ = [
    "FORMATS",
    "bench_end_to_end",
    "bench_parsers",
    "detect_format",
    "parse_bytes",
    "parse_file",
    "parse_text",
]

"""Labelled CAN captures from the DAGA and ROAD datasets, candump logs and python-can CSV.

Every loader returns a :class:`Capture`: the frames in input order, a per-frame truth
(``True`` = injected) and counts of what was skipped. Malformed rows (truncated lines, bad
hex, a DLC that is not 0..8 bytes or 64 bits, unparsable times) are skipped and counted,
never a crash; a file that cannot be read at all, or keeps no frame, raises
:class:`ConfigError`. Timestamps need not be sorted: the scorers sort internally and give
results in input order, and :attr:`Capture.unsorted` counts the rows out of order.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from fleetops.core.errors import ConfigError
from fleetops.core.types import CanFrames

Format = Literal["daga", "road", "candump", "csv"]
FORMATS: tuple[str, ...] = ("daga", "road", "candump", "csv")
_ROAD_BYTES = [f"Byte{i}" for i in range(1, 9)]


@dataclass(slots=True)
class Capture:
    """One capture: its frames in input order, the truth per frame and what was skipped."""

    name: str
    frames: CanFrames
    truth: npt.NDArray[np.bool_]  # injected frame (all False where the file has no labels)
    labelled: bool
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def unsorted(self) -> int:
        """How many frames have a timestamp earlier than the frame before them."""
        return int(np.count_nonzero(np.diff(self.frames.timestamp) < 0))

    def benign(self) -> CanFrames:
        """The frames labelled legitimate (all frames of an unlabelled capture)."""
        return self.frames.take(np.flatnonzero(~self.truth))


def _read_text(path: Path) -> bytes:
    if not path.is_file():
        raise ConfigError(f"capture {path} does not exist or is not a file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if not m.endswith("/")]
                if len(members) != 1:
                    raise ConfigError(f"{path}: expected one file in the zip, found {members}")
                return archive.read(members[0])
        return path.read_bytes()
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc


def _table(path: Path, required: list[str]) -> pl.DataFrame:
    raw = _read_text(path)
    try:
        # Every column as text: the quirks (float ids, odd DLCs) are handled below, and a
        # truncated line gives nulls (counted and skipped) instead of a parse error.
        df = pl.read_csv(
            io.BytesIO(raw),
            infer_schema=False,
            truncate_ragged_lines=True,
            encoding="utf8-lossy",
        )
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable CSV: {exc}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: missing columns {missing} (has {df.columns})")
    return df.select(required)


def _hex_id(col: pl.Expr) -> pl.Expr:
    # DAGA writes some ids as floats ("290.0"): the ".0" is dropped before parsing as hex.
    text = col.str.strip_chars().str.strip_prefix("0x").str.replace(r"\.0+$", "")
    return text.str.to_integer(base=16, strict=False)


def _finish(
    name: str,
    df: pl.DataFrame,
    payload: npt.NDArray[np.uint8],
    dlc: npt.NDArray[np.uint8],
    ok: npt.NDArray[np.bool_],
    skipped: dict[str, int],
    labelled: bool,
) -> Capture:
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        raise ConfigError(f"{name}: no valid frame ({skipped})")
    ts = df["ts"].to_numpy()[keep].astype(np.float64)
    frames = CanFrames(
        timestamp=ts - ts.min(),  # ROAD shifts each file's clock: only differences count
        arbitration_id=df["id"].to_numpy()[keep].astype(np.uint32),
        dlc=dlc[keep],
        data=np.ascontiguousarray(payload[keep]),
        label=np.where(df["truth"].to_numpy()[keep], "attack", ""),
    )
    frames.extra["skipped"] = dict(skipped)
    truth = df["truth"].to_numpy()[keep].astype(bool)
    return Capture(name, frames, truth, labelled, {k: v for k, v in skipped.items() if v})


def _count_bad(
    ok: npt.NDArray[np.bool_], reasons: dict[str, npt.NDArray[np.bool_]]
) -> dict[str, int]:
    out: dict[str, int] = {}
    seen = np.zeros_like(ok)
    for reason, bad in reasons.items():
        fresh = bad & ~seen
        out[reason] = int(np.count_nonzero(fresh))
        seen |= bad
    return out


_NIBBLE = np.zeros(256, dtype=np.uint8)
for _i, _c in enumerate("0123456789abcdef"):
    _NIBBLE[ord(_c)] = _NIBBLE[ord(_c.upper())] = _i


def _hex_bytes(
    text: pl.Series, width: int = 16
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Up to ``width`` hex digits per row as bytes, the digit count, and which rows are
    well-formed (hex digits only, an even count, at most ``width``)."""
    s = text.fill_null("").str.strip_chars()
    length = s.str.len_bytes().to_numpy().astype(np.int64)
    good = (
        s.str.contains(r"^[0-9A-Fa-f]*$").fill_null(False).to_numpy()
        & (length % 2 == 0)
        & (length <= width)
    )
    padded = s.str.pad_end(width, "0").str.slice(0, width)
    raw = np.frombuffer("".join(padded.to_list()).encode("ascii", "replace"), dtype=np.uint8)
    if raw.size != len(s) * width:  # a non-ASCII character somewhere: go row by row
        raw = np.frombuffer(
            b"".join(v.encode("ascii", "replace")[:width].ljust(width, b"0") for v in padded),
            dtype=np.uint8,
        )
    n = _NIBBLE[raw.reshape(len(s), width)]
    return ((n[:, 0::2] << 4) | n[:, 1::2]).astype(np.uint8), length, good


def read_daga(path: str | Path) -> Capture:
    """A DAGA capture (zipped or plain CSV: timestamp, CAN_ID, DLC, PAYLOAD_HEX, ANOMALY)."""
    source = Path(path)
    df = _table(source, ["timestamp", "CAN_ID", "DLC", "PAYLOAD_HEX", "ANOMALY"])
    df = df.select(
        ts=pl.col("timestamp").str.strip_chars().cast(pl.Float64, strict=False),
        id=_hex_id(pl.col("CAN_ID")),
        dlc=pl.col("DLC").str.strip_chars().cast(pl.Int64, strict=False),
        payload=pl.col("PAYLOAD_HEX"),
        label=pl.col("ANOMALY").str.strip_chars().str.to_lowercase(),
    )
    payload, digits, good_hex = _hex_bytes(df["payload"])
    good_hex &= digits == 16
    dlc_raw = df["dlc"].fill_null(-1).to_numpy()
    # DLC is written in bits (64) in DAGA; 0..8 bytes is accepted as well.
    dlc = np.where(dlc_raw == 64, 8, dlc_raw)
    label = df["label"].fill_null("").to_numpy()
    bad_label = ~np.isin(label, ["true", "false"])
    df = df.with_columns(truth=pl.Series(label == "true"))
    bad_dlc = (dlc < 0) | (dlc > 8)
    ts = df["ts"].to_numpy()
    bad_ts = ~np.isfinite(np.nan_to_num(ts, nan=np.inf))
    ids = df["id"].fill_null(-1).to_numpy()
    bad_id = (ids < 0) | (ids > 0x1FFFFFFF)
    ok = ~(bad_ts | bad_id | bad_dlc | ~good_hex | bad_label)
    reasons = {
        "bad_timestamp": bad_ts,
        "bad_id": bad_id,
        "bad_dlc": bad_dlc,
        "bad_payload": ~good_hex,
        "bad_label": bad_label,
    }
    dlc8 = np.clip(dlc, 0, 8).astype(np.uint8)
    payload[np.arange(8)[None, :] >= dlc8[:, None]] = 0
    return _finish(source.name, df, payload, dlc8, ok, _count_bad(ok, reasons), True)


def read_road(path: str | Path) -> Capture:
    """A ROAD CSV (Time, Id, Byte1..Byte8, Label), times shifted to start at 0."""
    source = Path(path)
    df = _table(source, ["Time", "Id", *_ROAD_BYTES, "Label"])
    label = df["Label"].str.strip_chars().fill_null("").to_numpy()
    known = np.isin(label, ["Benign", "Fuzzing", "Fabrication", "Masquerade"])
    byte_cols = [df[c].fill_null("").str.strip_chars() for c in _ROAD_BYTES]
    # Short frames leave trailing byte fields empty: the DLC is the count of leading bytes.
    present = np.stack([(c.str.len_bytes() > 0).to_numpy() for c in byte_cols], axis=1)
    dlc = present.sum(axis=1)
    contiguous = np.all(present == (np.arange(8)[None, :] < dlc[:, None]), axis=1)
    width_ok = np.all(
        np.stack([np.isin(c.str.len_bytes().to_numpy(), [0, 2]) for c in byte_cols], axis=1),
        axis=1,
    )
    joined = pl.DataFrame(byte_cols).select(pl.concat_str(pl.all(), separator="")).to_series()
    payload, _, good_hex = _hex_bytes(joined)
    good_hex = good_hex & width_ok & contiguous
    df = df.select(
        ts=pl.col("Time").str.strip_chars().cast(pl.Float64, strict=False),
        id=_hex_id(pl.col("Id")),
    ).with_columns(truth=pl.Series(known & (label != "Benign")))
    ts = df["ts"].to_numpy()
    bad_ts = ~np.isfinite(np.nan_to_num(ts, nan=np.inf))
    ids = df["id"].fill_null(-1).to_numpy()
    bad_id = (ids < 0) | (ids > 0x1FFFFFFF)
    ok = ~(bad_ts | bad_id | ~good_hex | ~known)
    reasons = {
        "bad_timestamp": bad_ts,
        "bad_id": bad_id,
        "bad_payload": ~good_hex,
        "bad_label": ~known,
    }
    dlc8 = dlc.astype(np.uint8)
    payload[np.arange(8)[None, :] >= dlc8[:, None]] = 0
    return _finish(source.name, df, payload, dlc8, ok, _count_bad(ok, reasons), True)


def _from_frames(path: Path, frames: CanFrames) -> Capture:
    if len(frames) == 0:
        raise ConfigError(f"{path}: no valid frame")
    labelled = frames.label is not None
    truth = (
        np.asarray(frames.label != "", dtype=bool)
        if frames.label is not None
        else np.zeros(len(frames), dtype=bool)
    )
    skipped = {"bad_lines": int(frames.extra.get("bad_lines", 0))}
    return Capture(path.name, frames, truth, labelled, {k: v for k, v in skipped.items() if v})


def load_capture(path: str | Path, fmt: str) -> Capture:
    """Read ``path`` in ``fmt`` (daga, road, candump, csv: python-can's CSV)."""
    source = Path(path)
    if fmt == "daga":
        return read_daga(source)
    if fmt == "road":
        return read_road(source)
    if fmt in ("candump", "csv"):
        from fleetops.telemetry.canlog import read_can_log, read_candump

        if not source.is_file():
            raise ConfigError(f"capture {source} does not exist or is not a file")
        frames = read_candump(source) if fmt == "candump" else read_can_log(source)
        return _from_frames(source, frames)
    raise ConfigError(f"unknown capture format {fmt!r} (one of {', '.join(FORMATS)})")

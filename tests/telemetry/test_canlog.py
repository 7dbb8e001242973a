"""CAN log round trips through python-can, the fast candump reader, and live capture."""

from __future__ import annotations

import time
from pathlib import Path

import can
import numpy as np
import pytest

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.types import CanFrames
from fleetops.telemetry.canlog import (
    SUPPORTED_SUFFIXES,
    capture,
    read_can_log,
    read_candump,
    write_can_log,
)

# Absolute time each format keeps: ASC stores its start to the millisecond, the others
# to the microsecond (or better).
ABSOLUTE_TOLERANCE = {".log": 2e-6, ".asc": 1e-3, ".blf": 2e-6, ".csv": 2e-6, ".trc": 2e-6}


def random_frames(n: int, seed: int = 0) -> CanFrames:
    rng = np.random.default_rng(seed)
    extended = rng.random(n) < 0.2
    ids = np.where(extended, rng.integers(0, 0x20000000, n), rng.integers(0, 0x800, n)).astype(
        np.uint32
    )
    dlc = rng.integers(0, 9, n).astype(np.uint8)
    data = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    data[np.arange(8)[None, :] >= dlc[:, None]] = 0
    timestamps = 1_735_689_600.123457 + np.cumsum(rng.uniform(1e-4, 0.02, n))
    return CanFrames(timestamps, ids, dlc, data, bus="can1", is_extended=extended)


def assert_same_frames(a: CanFrames, b: CanFrames, tolerance: float = 2e-6) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.arbitration_id, b.arbitration_id)
    np.testing.assert_array_equal(a.is_extended, b.is_extended)
    np.testing.assert_array_equal(a.dlc, b.dlc)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.timestamp, b.timestamp, rtol=0, atol=tolerance)


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_round_trip_through_each_format(tmp_path: Path, suffix: str) -> None:
    frames = random_frames(300)
    path = write_can_log(frames, tmp_path / f"capture{suffix}")
    back = read_can_log(path)
    assert_same_frames(frames, back, ABSOLUTE_TOLERANCE[suffix])
    # Spacing between frames survives to the microsecond in every format.
    np.testing.assert_allclose(
        np.diff(back.timestamp), np.diff(frames.timestamp), rtol=0, atol=2e-6
    )
    assert back.extra["bad_lines"] == 0
    if suffix == ".log":
        assert back.bus == "can1"  # candump keeps the interface name


def test_bus_name_is_given_or_taken_from_the_log(tmp_path: Path) -> None:
    path = write_can_log(random_frames(5), tmp_path / "a.log")
    assert read_can_log(path, bus="vehicle").bus == "vehicle"
    csv = write_can_log(random_frames(5), tmp_path / "a.csv")  # CSV has no channel
    assert read_can_log(csv).bus == "can0"


def test_unsupported_or_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unsupported CAN log format '\.txt'"):
        read_can_log(tmp_path / "x.txt")
    with pytest.raises(ConfigError, match="unsupported"):
        write_can_log(random_frames(2), tmp_path / "x.mf4")
    with pytest.raises(ConfigError, match="does not exist"):
        read_can_log(tmp_path / "missing.log")
    with pytest.raises(ConfigError, match="does not exist"):
        read_candump(tmp_path / "missing.log")
    with pytest.raises(ConfigError, match="folder"):
        write_can_log(random_frames(2), tmp_path / "no" / "such" / "x.log")


def corrupt_candump(tmp_path: Path) -> tuple[Path, CanFrames]:
    frames = random_frames(40, seed=1)
    path = write_can_log(frames, tmp_path / "good.log")
    lines = path.read_text().splitlines()
    lines.insert(3, "this is not candump")
    lines.insert(10, "(1735689600.5) can1 12G#00")  # not hex
    lines.insert(20, "(1735689600.6) can1 123#ABC")  # half a byte
    lines.insert(25, "")
    lines.append("(1735689700.000001) can1 123#R")  # remote frame
    lines.append("(1735689700.000002) can1 123##1AABBCCDDEEFF00112233")  # CAN FD
    lines.append("(1735689700.000003) can1 20000080#0000000000000000")  # error frame
    lines.append("(1735689700.000004) can1 7FF#0102 T")  # sent by us: direction flag
    bad = tmp_path / "bad.log"
    bad.write_text("\n".join(lines) + "\n")
    return bad, frames


def test_unreadable_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    bad, frames = corrupt_candump(tmp_path)
    back = read_can_log(bad)
    assert back.extra["bad_lines"] == 3
    assert back.extra["bad_line_numbers"] == [4, 11, 21]
    assert back.extra["remote_frames"] == 1
    assert back.extra["fd_frames"] == 1
    assert back.extra["error_frames"] == 1
    assert len(back) == len(frames) + 1  # the 7FF frame after the flagged lines
    assert_same_frames(frames, back.take(np.arange(len(frames))))
    with pytest.raises(ConfigError, match=":4: unreadable line"):
        read_can_log(bad, strict=True)


def test_bad_lines_in_csv_and_trc_do_not_stop_the_reader(tmp_path: Path) -> None:
    frames = random_frames(30, seed=2)
    for suffix, garbage in (
        (".csv", "1,2,3"),
        (".trc", "     9     1.000 DT  1  ZZZ Rx -  2  00 11"),
    ):
        path = write_can_log(frames, tmp_path / f"x{suffix}")
        lines = path.read_text().splitlines()
        header = (
            1
            if suffix == ".csv"
            else next(i for i, line in enumerate(lines) if not line.startswith(";"))
        )
        lines.insert(header + 5, garbage)  # after the header, between frames
        path.write_text("\n".join(lines) + "\n")
        back = read_can_log(path)
        assert back.extra["bad_lines"] == 1, suffix
        assert_same_frames(frames, back)


def test_a_file_of_garbage_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.log"
    path.write_text("hello\nworld\n")
    with pytest.raises(ConfigError, match="no readable CAN frame"):
        read_can_log(path)
    with pytest.raises(ConfigError, match="no readable CAN frame"):
        read_candump(path)


def test_fast_candump_reader_agrees_with_python_can(tmp_path: Path) -> None:
    bad, _ = corrupt_candump(tmp_path)
    for path in (bad, write_can_log(random_frames(3000, seed=4), tmp_path / "big.log")):
        slow, fast = read_can_log(path), read_candump(path)
        assert_same_frames(slow, fast, tolerance=0.0)  # the same float parse, bit for bit
        assert slow.extra == fast.extra
        assert slow.bus == fast.bus


def test_several_channels_need_a_choice(tmp_path: Path) -> None:
    path = tmp_path / "two.log"
    path.write_text("(1.000000) can0 100#01\n(1.001000) can1 200#0203\n(1.002000) can0 101#04\n")
    for reader in (read_can_log, read_candump):
        with pytest.raises(ValidationError, match="several channels"):
            reader(path)
        can1 = reader(path, channel="can1")
        assert can1.arbitration_id.tolist() == [0x200] and can1.bus == "can1"
        assert can1.data[0, :2].tolist() == [2, 3]
        assert reader(path, channel="can0").arbitration_id.tolist() == [0x100, 0x101]


def test_capture_from_a_virtual_bus() -> None:
    channel = f"fleetops-test-{time.monotonic_ns()}"
    with (
        can.Bus(interface="virtual", channel=channel) as sender,
        can.Bus(interface="virtual", channel=channel) as receiver,
    ):
        sent = [
            can.Message(arbitration_id=0x100 + i, data=bytes(range(i)), is_extended_id=False)
            for i in range(6)
        ]
        sent.append(can.Message(arbitration_id=0x18FEF100, data=b"\x01\x02", is_extended_id=True))
        sent.append(can.Message(arbitration_id=0x7DF, is_remote_frame=True, dlc=8))
        for msg in sent:
            sender.send(msg)
        frames = capture(receiver, max_frames=5, timeout=2.0, bus_name="vcan")
        assert frames.arbitration_id.tolist() == [0x100, 0x101, 0x102, 0x103, 0x104]
        assert frames.dlc.tolist() == [0, 1, 2, 3, 4]
        assert frames.data[4, :4].tolist() == [0, 1, 2, 3]
        assert frames.bus == "vcan"
        # The rest: one more data frame, an extended one, then a remote frame (counted).
        start = time.monotonic()
        rest = capture(receiver, max_frames=100, timeout=0.3)
        assert time.monotonic() - start < 2.0
        assert rest.arbitration_id.tolist() == [0x105, 0x18FEF100]
        assert rest.is_extended is not None and rest.is_extended.tolist() == [False, True]
        assert rest.extra["remote_frames"] == 1
        assert rest.timestamp[1] >= rest.timestamp[0]

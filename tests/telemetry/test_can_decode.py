"""The shipped DBC and the vectorised decoder, checked against cantools frame by frame."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import cantools
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from cantools.database.can import Database, Message
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fleetops.core.dbc import (
    crc8_sae_j1850,
    cycle_times,
    e2e_specs,
    load_dbc,
    signal_layout,
    verify_e2e,
    vss_paths,
)
from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.lake import Lake
from fleetops.core.schema import SIGNALS
from fleetops.core.types import CanFrames
from fleetops.core.vss import default_catalog
from fleetops.telemetry.can_decode import LONG_SCHEMA, CanDecoder

VIN = "WVWZZZ1JZXW000001"

# A user DBC with what goes wrong easily: Motorola signals starting mid-byte, signed
# fields of 1 and 5 bits, scaled IEEE floats and doubles in both byte orders, 64-bit
# integers, a 3-byte message and a multiplexed message on an extended id.
TRICKY_DBC = """VERSION ""

NS_ :

BS_:

BU_: ECU

BO_ 1 Tricky: 8 ECU
 SG_ MotoSigned12 : 3|12@0- (0.5,-3) [-1027|1020.5] "" ECU
 SG_ MotoU7 : 23|7@0+ (1,0) [0|127] "" ECU
 SG_ IntelSigned5 : 24|5@1- (1,0) [-16|15] "" ECU
 SG_ OneBitSigned : 29|1@1- (1,0) [-1|0] "" ECU
 SG_ MotoFloat : 39|32@0- (2,1) [0|0] "" ECU

BO_ 2 IntelDouble: 8 ECU
 SG_ D : 0|64@1- (1,0) [0|0] "" ECU

BO_ 3 MotoDouble: 8 ECU
 SG_ D : 7|64@0- (0.5,10) [0|0] "" ECU

BO_ 4 Wide: 8 ECU
 SG_ U64 : 0|64@1+ (1,0) [0|0] "" ECU

BO_ 5 WideSigned: 8 ECU
 SG_ S64 : 7|64@0- (1,0) [0|0] "" ECU

BO_ 6 Short: 3 ECU
 SG_ Across : 12|9@0+ (0.1,0) [0|51.1] "" ECU
 SG_ Low : 0|4@1+ (1,0) [0|15] "" ECU

BO_ 2550588916 ExtMux: 8 ECU
 SG_ Page M : 0|4@1+ (1,0) [0|15] "" ECU
 SG_ A m0 : 15|16@0- (0.01,0) [-327.68|327.67] "" ECU
 SG_ B m1 : 8|16@1+ (1,-1000) [-1000|64535] "" ECU
 SG_ C m1 : 24|1@1- (1,0) [-1|0] "" ECU
 SG_ F m2 : 32|32@1- (1,0) [0|0] "" ECU
 SG_ Always : 4|4@1+ (1,0) [0|15] "" ECU

BA_DEF_ SG_ "VSSPath" STRING ;
BA_DEF_DEF_ "VSSPath" "";
BA_ "VSSPath" SG_ 2550588916 A "Vehicle.Speed";

SIG_VALTYPE_ 1 MotoFloat : 1;
SIG_VALTYPE_ 2 D : 2;
SIG_VALTYPE_ 3 D : 2;
SIG_VALTYPE_ 2550588916 F : 1;
"""


def load_can(text: str) -> Database:
    db = cantools.database.load_string(text, "dbc", strict=True)
    assert isinstance(db, Database)
    return db


def decode_with_cantools(message: Message, payload: bytes) -> dict[str, float]:
    values = message.decode(payload, decode_choices=False, scaling=True, allow_truncated=True)
    assert isinstance(values, dict)
    out: dict[str, float] = {}
    for name, value in values.items():
        assert isinstance(value, int | float)  # no choices asked for: numbers only
        out[name] = float(value)
    return out


SHIPPED = load_dbc()
TRICKY = load_can(TRICKY_DBC)
DECODERS = {"shipped": CanDecoder(SHIPPED), "tricky": CanDecoder(TRICKY)}


def frames_of(message: Message, payloads: list[bytes]) -> CanFrames:
    n = len(payloads)
    data = np.zeros((n, 8), dtype=np.uint8)
    for i, payload in enumerate(payloads):
        data[i, : len(payload)] = np.frombuffer(payload, dtype=np.uint8)
    return CanFrames(
        timestamp=1.7e9 + np.arange(n, dtype=np.float64) * 1e-3,
        arbitration_id=np.full(n, message.frame_id, dtype=np.uint32),
        dlc=np.array([len(p) for p in payloads], dtype=np.uint8),
        data=data,
        is_extended=np.full(n, bool(message.is_extended_frame)),
    )


def out_name(db: Database, message: Message, signal: str) -> str:
    return vss_paths(db).get((message.frame_id, signal), f"{message.name}.{signal}")


def per_frame(table: pa.Table) -> list[dict[str, float]]:
    """Long rows regrouped by frame (every test frame has its own millisecond)."""
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    frames: dict[int, dict[str, float]] = {}
    for t, name, value in zip(
        ts.tolist(),
        table.column("signal").to_pylist(),
        table.column("value").to_pylist(),
        strict=True,
    ):
        frames.setdefault(t, {})[name] = value
    return [frames[k] for k in sorted(frames)]


def same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def check_parity(
    db: Database, decoder: CanDecoder, message: Message, payloads: list[bytes]
) -> None:
    expected = [
        {out_name(db, message, k): v for k, v in decode_with_cantools(message, p).items()}
        for p in payloads
    ]
    frames = frames_of(message, payloads)
    got: list[dict[str, float]] = [{} for _ in payloads]
    ts = np.round(frames.timestamp * 1e6).astype(np.int64)
    table = decoder.decode(frames)
    position = {int(t): i for i, t in enumerate(ts)}
    for t, name, value in zip(
        table.column("ts").cast(pa.int64()).to_pylist(),
        table.column("signal").to_pylist(),
        table.column("value").to_pylist(),
        strict=True,
    ):
        got[position[t]][name] = value
    for want, have, payload in zip(expected, got, payloads, strict=True):
        assert want.keys() == have.keys(), payload.hex()
        for name in want:
            assert same(want[name], have[name]), (name, payload.hex(), want[name], have[name])


def valid_for_cantools(message: Message, payload: bytes) -> bool:
    try:
        message.decode(payload, decode_choices=False, allow_truncated=True)
    except cantools.database.DecodeError:
        return False  # the multiplexer selects no page; tested on its own below
    return True


@st.composite
def message_and_payloads(draw: st.DrawFn, db: Database) -> tuple[Message, list[bytes]]:
    message = draw(st.sampled_from(db.messages))
    full = st.binary(min_size=message.length, max_size=message.length)
    any_length = st.integers(0, 8).flatmap(lambda k: st.binary(min_size=k, max_size=k))
    payloads = draw(st.lists(st.one_of(full, full, any_length), min_size=1, max_size=40))
    return message, payloads


@pytest.mark.parametrize("which", ["shipped", "tricky"])
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_vectorised_values_equal_cantools(which: str, data: st.DataObject) -> None:
    db = SHIPPED if which == "shipped" else TRICKY
    message, payloads = data.draw(message_and_payloads(db))
    payloads = [p for p in payloads if valid_for_cantools(message, p)]
    assume(payloads)
    check_parity(db, DECODERS[which], message, payloads)


@pytest.mark.parametrize("which", ["shipped", "tricky"])
def test_every_message_and_signal_at_extremes(which: str) -> None:
    """All-zero, all-one and alternating payloads hit sign bits and float specials."""
    db = SHIPPED if which == "shipped" else TRICKY
    for message in db.messages:
        payloads = [bytes([b] * message.length) for b in (0x00, 0xFF, 0x55, 0xAA, 0x80, 0x7F, 0x01)]
        payloads = [p for p in payloads if valid_for_cantools(message, p)]
        if payloads:
            check_parity(db, DECODERS[which], message, payloads)


# -- the shipped database --------------------------------------------------------------------


def test_shipped_dbc_is_a_realistic_ev_can() -> None:
    db = SHIPPED
    assert 12 <= len(db.messages) <= 16
    assert all(not m.is_extended_frame and m.frame_id <= 0x7FF for m in db.messages)
    cycles = cycle_times(db)
    assert set(cycles) == {m.frame_id for m in db.messages}
    assert {round(c * 1000) for c in cycles.values()} == {10, 20, 50, 100, 500, 1000}
    signals = [s for m in db.messages for s in m.signals]
    assert {s.byte_order for s in signals} == {"little_endian", "big_endian"}
    assert any(s.is_signed for s in signals) and any(not s.is_signed for s in signals)
    assert any(s.is_float for s in signals)
    assert any(s.scale != 1 for s in signals) and any(s.offset != 0 for s in signals)
    assert any(m.is_multiplexed() for m in db.messages)
    assert any(s.choices for s in signals)
    # Safety-relevant messages carry a 4-bit alive counter and an 8-bit CRC.
    specs = e2e_specs(db)
    for name in ("VCU_DriveCmd", "MCU_Status", "EPS_Steering", "ESP_Dynamics", "BMS_PackStatus"):
        spec = specs[db.get_message_by_name(name).frame_id]
        assert spec.counter is not None and spec.counter.length == 4
        assert spec.checksum_byte == 7


def test_vss_attribute_names_catalog_signals_in_their_units() -> None:
    catalog = default_catalog()
    paths = vss_paths(SHIPPED)
    assert len(set(paths.values())) >= 0.9 * len(catalog)
    for (frame_id, name), path in paths.items():
        signal = SHIPPED.get_message_by_frame_id(frame_id).get_signal_by_name(name)
        assert signal.dbc.attributes["VSSPath"].value == path
        assert path in catalog
        assert (signal.unit or None) == catalog[path].unit, path


def test_load_dbc_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_dbc(tmp_path / "missing.dbc")
    broken = tmp_path / "broken.dbc"
    broken.write_text('VERSION ""\nBO_ 1 M: 8 X\n SG_ S : 0|8@1+ (1,0) [0|1] "" X\nBO_ oops\n')
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_dbc(broken)


def _crc8_bitwise(data: bytes) -> int:
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1D) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0xFF


def test_crc8_sae_j1850_check_value_and_e2e_definition() -> None:
    check = crc8_sae_j1850(np.frombuffer(b"123456789", dtype=np.uint8)[None, :])
    assert int(check[0]) == 0x4B  # the catalogued check value of CRC-8/SAE-J1850
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 256, (50, 8), dtype=np.uint8)
    for spec in e2e_specs(SHIPPED).values():
        want = [
            _crc8_bitwise(spec.data_id + bytes(row[spec.covered_bytes].tolist())) for row in rows
        ]
        assert spec.checksum(rows).tolist() == want
        assert spec.checksum_byte not in spec.covered_bytes


def test_verify_e2e_flags_bad_checksums_and_short_frames() -> None:
    message = SHIPPED.get_message_by_name("VCU_DriveCmd")
    spec = e2e_specs(SHIPPED)[message.frame_id]
    rows = np.random.default_rng(4).integers(0, 256, (3, 8), dtype=np.uint8)
    rows[:, 7] = spec.checksum(rows)
    frames = frames_of(message, [bytes(r.tolist()) for r in rows])
    assert verify_e2e(frames, e2e_specs(SHIPPED)).all()
    frames.data[1, 7] ^= 1
    frames.dlc[2] = 7
    assert verify_e2e(frames, e2e_specs(SHIPPED)).tolist() == [True, False, False]


def test_signal_layout_of_motorola_signals() -> None:
    # MotoSigned12 starts at bit 3 of byte 0: 4 bits there, then all of byte 1.
    layout = signal_layout(TRICKY.get_message_by_name("Tricky").get_signal_by_name("MotoSigned12"))
    assert layout.big_endian and layout.min_dlc == 2
    assert layout.shift == 48  # bits 48..59 of the byte-swapped word
    across = signal_layout(TRICKY.get_message_by_name("Short").get_signal_by_name("Across"))
    assert across.min_dlc == 3


# -- decoder behaviour -----------------------------------------------------------------------


def encode(name: str, values: dict[str, float]) -> bytes:
    message = SHIPPED.get_message_by_name(name)
    payload: bytes = message.encode(values, strict=False, padding=False)
    return payload


def test_multiplexed_signals_only_where_their_page_is_sent() -> None:
    message = SHIPPED.get_message_by_name("BMS_CellStats")
    pages = [
        encode(
            "BMS_CellStats",
            {
                "CellStatsPage": 0,
                "CellVoltageMin": 3.6,
                "CellVoltageMax": 3.7,
                "MinCellIndex": 4,
                "MaxCellIndex": 90,
            },
        ),
        encode(
            "BMS_CellStats",
            {
                "CellStatsPage": 1,
                "CellTempAvg": 25.5,
                "CellTempMin": 20,
                "CellTempMax": 30,
                "CoolantInletTemp": 18,
            },
        ),
        encode(
            "BMS_CellStats",
            {
                "CellStatsPage": 2,
                "BalancingActive": 1,
                "BalancingCells": 7,
                "IsolationResistance": 1500,
            },
        ),
        bytes([3, 0xFF, 0xFF, 0, 0, 0, 0, 0]),  # page 3 is not defined
    ]
    decoder = CanDecoder(SHIPPED)
    rows = per_frame(decoder.decode(frames_of(message, pages)))
    tp = "Vehicle.Powertrain.TractionBattery."
    assert rows[0] == {
        "BMS_CellStats.CellStatsPage": 0.0,
        tp + "CellVoltage.Min": pytest.approx(3.6),
        tp + "CellVoltage.Max": pytest.approx(3.7),
        "BMS_CellStats.MinCellIndex": 4.0,
        "BMS_CellStats.MaxCellIndex": 90.0,
    }
    assert rows[1][tp + "Temperature.Average"] == 25.5
    assert tp + "CellVoltage.Min" not in rows[1] and "BMS_CellStats.BalancingCells" not in rows[1]
    assert rows[2]["BMS_CellStats.IsolationResistance"] == 1500.0
    assert rows[3] == {"BMS_CellStats.CellStatsPage": 3.0}
    assert decoder.stats.unmatched_mux == 1
    wide = decoder.decode_wide(frames_of(message, pages))["BMS_CellStats"]
    assert wide.column("CellTempAvg").null_count == 3
    assert wide.column("CellStatsPage").null_count == 0


def test_frames_shorter_than_a_signal_skip_only_that_signal() -> None:
    message = SHIPPED.get_message_by_name("MCU_Thermal")  # 6 bytes, Motorola
    full = encode(
        "MCU_Thermal",
        {
            "MotorTemp": 80,
            "CoolantTemp": 40,
            "InverterTemp": 55.5,
            "DeratingFactor": 100,
            "PumpDuty": 60,
        },
    )
    decoder = CanDecoder(SHIPPED)
    rows = per_frame(decoder.decode(frames_of(message, [full, full[:2], full[:4], b""])))
    vss = "Vehicle.Powertrain.ElectricMotor."
    assert rows[0][vss + "Temperature"] == 80.0 and rows[0]["MCU_Thermal.PumpDuty"] == 60.0
    assert rows[1] == {vss + "Temperature": 80.0}  # MotorTemp fits in bytes 0-1
    assert set(rows[2]) == {
        vss + "Temperature",
        vss + "CoolantTemperature",
        "MCU_Thermal.InverterTemp",
    }
    assert len(rows) == 3  # the empty frame yields nothing
    assert decoder.stats.truncated_values == 4 + 2 + 5


def test_unknown_ids_are_counted_not_errors() -> None:
    known = SHIPPED.get_message_by_name("VCU_Trip")
    payload = encode("VCU_Trip", {"Odometer": 1234.5, "RemainingRange": 250_000, "Consumption": 17})
    frames = CanFrames(
        timestamp=1.7e9 + np.arange(5, dtype=np.float64) * 1e-3,
        arbitration_id=np.array([0x7FF, known.frame_id, 0x123, 0x123, known.frame_id], np.uint32),
        dlc=np.full(5, 8, dtype=np.uint8),
        data=np.tile(np.frombuffer(payload, dtype=np.uint8), (5, 1)),
        # The last one has VCU_Trip's number but as an extended id: another message.
        is_extended=np.array([False, False, False, False, True]),
    )
    decoder = CanDecoder(SHIPPED)
    table = decoder.decode(frames)
    assert table.num_rows == 3  # only frame 1
    assert decoder.stats.unknown_frames == 4 and decoder.stats.decoded_frames == 1
    assert decoder.stats.unknown_ids == Counter({0x123: 2, 0x7FF: 1, known.frame_id: 1})
    decoder.reset_stats()
    assert decoder.stats.frames == 0


def test_extended_ids_decode_with_their_own_message() -> None:
    message = TRICKY.get_message_by_name("ExtMux")
    payload = message.encode({"Page": 0, "A": -12.34, "Always": 9}, strict=False)
    rows = per_frame(CanDecoder(TRICKY).decode(frames_of(message, [payload])))
    assert rows == [{"ExtMux.Page": 0.0, "ExtMux.Always": 9.0, "Vehicle.Speed": -12.34}]


def test_long_wide_and_signals_outputs() -> None:
    rng = np.random.default_rng(5)
    messages = SHIPPED.messages
    payloads = {
        m.frame_id: m.encode({s.name: s.minimum or 0 for s in m.signals}, strict=False)
        for m in messages
    }
    ids = rng.choice([m.frame_id for m in messages], 300).astype(np.uint32)
    data = np.zeros((300, 8), dtype=np.uint8)
    dlc = np.zeros(300, dtype=np.uint8)
    for i, frame_id in enumerate(ids):
        raw = np.frombuffer(payloads[int(frame_id)], dtype=np.uint8)
        data[i, : raw.size] = raw
        dlc[i] = raw.size
    frames = CanFrames(1.7e9 + np.arange(300, dtype=np.float64) * 0.001, ids, dlc, data)
    decoder = CanDecoder(SHIPPED)

    long = decoder.decode(frames)
    assert long.schema == LONG_SCHEMA
    ts = long.column("ts").cast(pa.int64()).to_numpy()
    assert ts[0] == round(frames.timestamp[0] * 1e6)
    assert (np.diff(ts) >= 0).all()  # rows come in frame order
    assert set(ts.tolist()) == set(np.round(frames.timestamp * 1e6).astype(np.int64).tolist())

    wide = decoder.decode_wide(frames)
    for message in messages:
        count = int((ids == message.frame_id).sum())
        if count:
            table = wide[message.name]
            assert table.num_rows == count
            assert table.column_names == ["ts", *(s.name for s in message.signals)]
            assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")

    signals = decoder.to_signals(frames, VIN)
    assert signals.schema == SIGNALS
    catalog = default_catalog()
    assert set(signals.column("signal").to_pylist()) <= set(catalog)
    assert set(signals.column("vin").to_pylist()) == {VIN}
    mapped = long.filter(pc.starts_with(long.column("signal"), "Vehicle."))
    assert signals.num_rows == mapped.num_rows
    with pytest.raises(ValidationError):
        decoder.to_signals(frames, "NOT-A-VIN")


def test_signals_go_into_the_lake(tmp_path: Path) -> None:
    message = SHIPPED.get_message_by_name("BMS_SOC")
    payload = encode(
        "BMS_SOC",
        {
            "SOC_Physical": 55.5,
            "SOC_Displayed": 56,
            "SOH": 95,
            "ChargeState": 0,
            "IsCharging": 0,
            "TimeToFull": 0,
        },
    )
    table = CanDecoder(SHIPPED).to_signals(frames_of(message, [payload] * 3), VIN)
    lake = Lake(tmp_path)
    lake.write("signals", table)
    back = lake.query(
        "SELECT value FROM signals WHERE signal = "
        "'Vehicle.Powertrain.TractionBattery.StateOfCharge.Current'"
    )
    assert back.column("value").to_pylist() == [55.5] * 3


def test_vss_only_decodes_only_mapped_signals() -> None:
    message = SHIPPED.get_message_by_name("BMS_CellStats")
    payload = encode(
        "BMS_CellStats",
        {
            "CellStatsPage": 1,
            "CellTempAvg": 30,
            "CellTempMin": 25,
            "CellTempMax": 35,
            "CoolantInletTemp": 20,
        },
    )
    decoder = CanDecoder(SHIPPED, vss_only=True)
    rows = per_frame(decoder.decode(frames_of(message, [payload])))
    # The page selector is evaluated but not output.
    assert rows == [{"Vehicle.Powertrain.TractionBattery.Temperature.Average": 30.0}]
    assert set(
        decoder.decode_wide(frames_of(message, [payload]))["BMS_CellStats"].column_names
    ) == {"ts", "CellVoltageMin", "CellVoltageMax", "CellTempAvg"}


def test_empty_input() -> None:
    empty = CanFrames(
        np.zeros(0), np.zeros(0, np.uint32), np.zeros(0, np.uint8), np.zeros((0, 8), np.uint8)
    )
    decoder = CanDecoder(SHIPPED)
    assert decoder.decode(empty).num_rows == 0
    assert decoder.decode_wide(empty) == {}
    assert decoder.to_signals(empty, VIN).schema == SIGNALS

"""Deterministic vehicle messages whose every value can be recomputed for checking."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fleetops.core.envelope import encode_message
from fleetops.core.types import vin_check_digit

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
SIGNALS = (
    "Vehicle.Speed",
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
    "Vehicle.Exterior.AirTemperature",
    "Vehicle.LowVoltageBattery.CurrentVoltage",
)


def make_vin(i: int) -> str:
    body = f"WF0XXGCF0{i:08d}"
    return body[:8] + vin_check_digit(body) + body[9:]


def value(vin_no: int, seq: int, sample: int, signal_no: int) -> float:
    return float((vin_no * 7 + seq * 3 + sample + signal_no * 11) % 30)


def message(vin_no: int, seq: int, samples: int = 20) -> tuple[str, bytes]:
    vin = make_vin(vin_no)
    ts = T0_MS + (seq * samples + np.arange(samples)) * 1000
    sample = np.arange(samples)
    signals = {
        path: (vin_no * 7 + seq * 3 + sample + k * 11) % 30 for k, path in enumerate(SIGNALS)
    }
    return vin, encode_message(vin, seq, ts, signals)


def stream(vehicles: int, per_vehicle: int, samples: int = 20) -> Iterator[tuple[str, bytes]]:
    """Messages interleaved across vehicles, each vehicle's in seq order."""
    for seq in range(per_vehicle):
        for v in range(vehicles):
            yield message(v, seq, samples)

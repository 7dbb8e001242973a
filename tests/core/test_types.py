from __future__ import annotations

import numpy as np
import pytest

from fleetops.core.errors import ValidationError
from fleetops.core.types import CanFrames, Ecu, Vehicle, validate_vin, vin_check_digit


def test_vin_check_digit_matches_a_real_vin() -> None:
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"  # the 49 CFR 565 worked example
    assert validate_vin("1m8gdm9axkp042788", check_digit=True) == "1M8GDM9AXKP042788"


@pytest.mark.parametrize(
    ("vin", "message"),
    [("ABC", "17"), ("1M8GDM9AXKP04278O", "not allowed"), ("1M8GDM9A1KP042788", "check digit")],
)
def test_bad_vins_are_rejected_with_the_reason(vin: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_vin(vin, check_digit=True)


def test_vehicle_round_trips_through_dict() -> None:
    vehicle = Vehicle(
        "1M8GDM9AXKP042788", "Volta E3", 2024, "EU-North", (Ecu("BMS", "BMS-HW-2", "3.1.0"),)
    )
    assert Vehicle.from_dict(vehicle.to_dict()) == vehicle
    assert vehicle.ecu("BMS").software_version == "3.1.0"
    with pytest.raises(KeyError):
        vehicle.ecu("ADAS")
    with pytest.raises(ValidationError, match="model year"):
        Vehicle("1M8GDM9AXKP042788", "x", 1900, "EU")


def test_can_frames_round_trip_through_arrow() -> None:
    rng = np.random.default_rng(0)
    n = 100
    frames = CanFrames(
        timestamp=(1_767_225_600 + np.arange(n) * 0.01).astype(np.float64),
        arbitration_id=rng.integers(0, 0x7FF, n).astype(np.uint32),
        dlc=np.full(n, 8, np.uint8),
        data=rng.integers(0, 256, (n, 8)).astype(np.uint8),
        label=np.array(["", "flooding"] * 50),
    )
    back = CanFrames.from_arrow(frames.to_arrow())
    np.testing.assert_array_equal(back.data, frames.data)
    np.testing.assert_array_equal(back.arbitration_id, frames.arbitration_id)
    np.testing.assert_allclose(back.timestamp, frames.timestamp, atol=1e-6)
    assert back.label is not None and list(back.label[:2]) == ["", "flooding"]
    assert frames.payload_u64[0] == int.from_bytes(frames.data[0].tobytes(), "little")


def test_can_frames_reject_bad_shapes() -> None:
    with pytest.raises(ValidationError, match="shape"):
        CanFrames(
            np.zeros(2), np.zeros(2, np.uint32), np.zeros(2, np.uint8), np.zeros((2, 4), np.uint8)
        )

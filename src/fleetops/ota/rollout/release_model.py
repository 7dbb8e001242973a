"""What a release *does* to a vehicle, as the virtual fleet and the rollout simulation apply it.

A :class:`ReleaseBehaviour` is the test bench's description of a software release: extra
DTCs of some code from the updated ECU, a boot-failure probability, an install-failure
probability, and changes to the CAN traffic (a new message, a changed cycle time) that the
in-vehicle IDS may flag. It is read from YAML or JSON (``fleetops ota campaign test-release
--behaviour file.yaml``) or taken from :data:`PRESETS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fleetops.core.errors import ConfigError
from fleetops.core.types import CanFrames

CAN_EFFECTS = ("extra_message", "cycle_change")


@dataclass(frozen=True, slots=True)
class CanEffect:
    """``extra_message``: a new frame id at ``rate_hz``; ``cycle_change``: an existing id
    sent every ``period_scale`` × its usual period."""

    kind: str
    arbitration_id: int
    rate_hz: float = 10.0
    period_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in CAN_EFFECTS:
            raise ConfigError(f"CAN effect {self.kind!r} is not one of {', '.join(CAN_EFFECTS)}")
        if not 0 <= self.arbitration_id <= 0x1FFFFFFF:
            raise ConfigError(f"CAN id {self.arbitration_id:#x} is out of range")
        if self.rate_hz <= 0 or self.period_scale <= 0:
            raise ConfigError("rate_hz and period_scale must be positive")


@dataclass(frozen=True, slots=True)
class ReleaseBehaviour:
    """The simulated effect of a release on every vehicle that installs it."""

    name: str
    ecu: str = "BMS"  # the updated ECU: extra DTCs are reported by it
    dtc_code: str = "P0AFA"
    dtc_rate_per_day: float = 0.0  # extra DTCs per vehicle-day
    boot_failure_per_day: float = 0.0  # failed boots per vehicle-day
    install_failure_prob: float = 0.005
    can_effects: tuple[CanEffect, ...] = ()

    def __post_init__(self) -> None:
        if self.dtc_rate_per_day < 0 or self.boot_failure_per_day < 0:
            raise ConfigError("rates of a release behaviour cannot be negative")
        if not 0 <= self.install_failure_prob <= 1:
            raise ConfigError("install_failure_prob must be in [0, 1]")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> ReleaseBehaviour:
        known = set(cls.__slots__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown} (allowed: {sorted(known)})")
        effects = []
        for i, e in enumerate(d.get("can_effects") or []):
            if not isinstance(e, dict):
                raise ConfigError(f"{source}: can_effects[{i}] must be a mapping")
            try:
                raw_id = e.get("arbitration_id", e.get("id"))
                if raw_id is None:
                    raise KeyError("arbitration_id")
                ident = int(raw_id, 0) if isinstance(raw_id, str) else int(raw_id)
                effects.append(
                    CanEffect(
                        str(e["kind"]),
                        ident,
                        float(e.get("rate_hz", 10.0)),
                        float(e.get("period_scale", 1.0)),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: can_effects[{i}]: {exc}") from exc
        rest = {k: v for k, v in d.items() if k != "can_effects"}
        try:
            return cls(**rest, can_effects=tuple(effects))
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    @classmethod
    def load(cls, name_or_path: str) -> ReleaseBehaviour:
        """A preset by name, or a YAML/JSON file."""
        if name_or_path in PRESETS:
            return PRESETS[name_or_path]
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"no release behaviour file {name_or_path!r} and no preset of that name "
                f"(presets: {', '.join(PRESETS)})"
            )
        try:
            text = path.read_text(encoding="utf-8")
            doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read release behaviour {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: a release behaviour must be a mapping")
        doc.setdefault("name", path.stem)
        return cls.from_dict(doc, str(path))


PRESETS: dict[str, ReleaseBehaviour] = {
    "clean": ReleaseBehaviour("clean", dtc_rate_per_day=0.0, install_failure_prob=0.005),
    "faulty-dtc": ReleaseBehaviour(
        "faulty-dtc", dtc_code="P0AFA", dtc_rate_per_day=0.15, install_failure_prob=0.005
    ),
    "faulty-boot": ReleaseBehaviour("faulty-boot", boot_failure_per_day=0.05),
    "faulty-can": ReleaseBehaviour(
        "faulty-can", can_effects=(CanEffect("extra_message", 0x6F1, rate_hz=20.0),)
    ),
    "faulty-install": ReleaseBehaviour("faulty-install", install_failure_prob=0.15),
}
"""Named behaviours for the CLI and the tests."""


def apply_can_effects(
    frames: CanFrames, effects: tuple[CanEffect, ...], rng: np.random.Generator
) -> CanFrames:
    """The bus as it would be with the release: frames added or re-timed, sorted by time."""
    if not effects or len(frames) == 0:
        return frames
    t0, t1 = float(frames.timestamp.min()), float(frames.timestamp.max())
    ts, ids, dlc, data = [frames.timestamp], [frames.arbitration_id], [frames.dlc], [frames.data]
    keep = np.ones(len(frames), dtype=bool)
    for e in effects:
        if e.kind == "extra_message":
            times = np.arange(t0 + rng.uniform(0, 1 / e.rate_hz), t1, 1 / e.rate_hz)
            times = times + rng.exponential(50e-6, times.size)
            payload = np.zeros((times.size, 8), dtype=np.uint8)
            payload[:, 0] = np.arange(times.size) % 256
            payload[:, 1:4] = rng.integers(0, 256, (times.size, 3))
        else:
            own = np.flatnonzero(frames.arbitration_id == e.arbitration_id)
            if own.size < 2:
                raise ConfigError(
                    f"CAN id {e.arbitration_id:#x} is not on the bus: cannot re-time it"
                )
            keep[own] = False
            own_t = frames.timestamp[own]
            period = float(np.median(np.diff(own_t))) * e.period_scale
            times = np.arange(own_t[0], t1, period) + rng.exponential(50e-6)
            src = own[np.clip(np.searchsorted(own_t, times, side="right") - 1, 0, own.size - 1)]
            payload = frames.data[src]
        ts.append(times)
        ids.append(np.full(times.size, e.arbitration_id, dtype=np.uint32))
        dlc.append(np.full(times.size, 8, dtype=np.uint8))
        data.append(payload)
    mask = np.concatenate([keep] + [np.ones(t.size, dtype=bool) for t in ts[1:]])
    all_t = np.concatenate(ts)[mask]
    order = np.argsort(all_t, kind="stable")
    return CanFrames(
        timestamp=all_t[order],
        arbitration_id=np.concatenate(ids)[mask][order].astype(np.uint32),
        dlc=np.concatenate(dlc)[mask][order].astype(np.uint8),
        data=np.concatenate(data)[mask][order].astype(np.uint8),
        bus=frames.bus,
    )

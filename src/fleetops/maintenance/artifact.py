"""Model artifacts on disk: a folder of LightGBM text boosters and one JSON model card.

Shared by every maintenance model so they all record the same provenance (versions,
date, parameters, data, metrics, features) and refuse a tampered or foreign folder the
same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import lightgbm as lgb

import fleetops
from fleetops.core.errors import ConfigError

CARD = "model_card.json"


def create_folder(folder: Path | str) -> Path:
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create ({exc.strerror})") from None
    return folder


def card_header(
    *,
    format: str,
    kind: str,
    params: dict[str, Any],
    data: dict[str, Any] | None,
    training: dict[str, Any],
    metrics: dict[str, Any] | None,
    features: list[str],
) -> dict[str, Any]:
    """The fields every model card starts with; models add their own state after them."""
    return {
        "format": format,
        "model": kind,
        "fleetops_version": fleetops.__version__,
        "lightgbm_version": lgb.__version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "params": params,
        "data": data or {},
        "training": training,
        "metrics": metrics or {},
        "features": features,
    }


def write_card(folder: Path, card: dict[str, Any]) -> None:
    (folder / CARD).write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")


def read_card(folder: Path | str, format: str) -> tuple[Path, dict[str, Any]]:
    """(folder, card); a clear error when the folder is not an artifact of ``format``."""
    folder = Path(folder)
    path = folder / CARD
    if not path.is_file():
        raise ConfigError(f"{folder}: not a model artifact (no {CARD})")
    card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if card.get("format") != format:
        raise ConfigError(f"{folder}: format {card.get('format')!r}, expected {format}")
    return folder, card


def save_booster(folder: Path, name: str, booster: lgb.Booster) -> dict[str, str]:
    """Write one booster; its card entry records the file's hash."""
    booster.save_model(str(folder / name))
    return {"file": name, "sha256": _sha256(folder / name)}


def load_booster(folder: Path, entry: dict[str, Any]) -> lgb.Booster:
    path = folder / entry["file"]
    if not path.is_file() or _sha256(path) != entry["sha256"]:
        raise ConfigError(f"{path}: missing or does not match the model card's hash")
    return lgb.Booster(model_file=str(path))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

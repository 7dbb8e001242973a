"""``python -m fleetops.scale``: the scale commands without the main CLI."""

from fleetops.scale.cli import scale_app

if __name__ == "__main__":  # pragma: no cover - console entry point
    scale_app()

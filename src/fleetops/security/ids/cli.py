"""``fleetops ids``: train, detect and evaluate the CAN intrusion detector."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
import orjson
import typer
from rich.table import Table

from fleetops.cli_support import MultiValueOptions, console, out
from fleetops.core.errors import ConfigError, FleetopsError
from fleetops.security.ids.detect import alerts_from_scores, score_frames
from fleetops.security.ids.evaluate import evaluate
from fleetops.security.ids.loaders import FORMATS, Capture, load_capture
from fleetops.security.ids.model import IdsModel, train
from fleetops.security.ids.ocsf import to_ocsf
from fleetops.security.ids.signals import check_dbc

ids_app = typer.Typer(
    help="CAN intrusion detection: train, detect, evaluate.", no_args_is_help=True
)

FormatOption = Annotated[
    str, typer.Option("--format", help=f"Capture format: {', '.join(FORMATS)}.")
]
TrainOption = Annotated[
    list[Path], typer.Option("--train", help="Training capture (benign frames are used).")
]
DbcOption = Annotated[
    Path | None,
    typer.Option(
        "--dbc",
        help="DBC of the traffic: learn per-signal checks (train, evaluate) or check that "
        "the model was trained with it (detect).",
    ),
]


def _fail(exc: FleetopsError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(exc.exit_code)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _train(fmt: str, paths: list[Path], dbc: Path | None) -> IdsModel:
    if not paths:
        raise ConfigError("give at least one --train capture")
    captures = [load_capture(p, fmt) for p in paths]
    return train([c.benign() for c in captures], dbc=dbc)


@ids_app.command("train", cls=MultiValueOptions)
def train_cmd(
    train_files: TrainOption,
    model_path: Annotated[Path, typer.Option("--model", help="Where to write the model (.npz).")],
    fmt: FormatOption = "candump",
    dbc: DbcOption = None,
) -> None:
    """Learn normal traffic from attack-free captures and write the model file."""
    try:
        _check_format(fmt)
        model = _train(fmt, train_files, dbc)
        model.save(model_path)
    except FleetopsError as exc:
        raise _fail(exc) from None
    out.print(
        f"model of {len(model)} ids from {model.trained_frames} frames: {model_path} "
        f"({model_path.stat().st_size} bytes)"
    )
    if model.calibration:
        # What held-out calibration dropped or widened, so an operator sees how much of
        # the first fit did not carry over from one capture to another.
        out.print("calibration: " + ", ".join(f"{k} {v}" for k, v in model.calibration.items()))


@ids_app.command("detect")
def detect_cmd(
    capture: Annotated[Path, typer.Argument(help="Log to score.")],
    model_path: Annotated[Path, typer.Option("--model", help="Model file from `ids train`.")],
    fmt: FormatOption = "candump",
    output: Annotated[
        Path | None, typer.Option("--out", help="OCSF JSON lines (default: stdout).")
    ] = None,
    vehicle: Annotated[
        str, typer.Option("--vehicle", help="Vehicle id (VIN) for the findings.")
    ] = "unknown",
    dbc: DbcOption = None,
) -> None:
    """Score a log and print its alerts as OCSF Detection Findings (JSON lines)."""
    try:
        _check_format(fmt)
        model = IdsModel.load(model_path)
        if dbc is not None:
            # The model carries the signal layouts it learned; the DBC only confirms them.
            check_dbc(model.signals, dbc)
        cap = load_capture(capture, fmt)
        scores = score_frames(model, cap.frames)
        alerts = alerts_from_scores(model, cap.frames, scores)
        lines = b"".join(
            orjson.dumps(to_ocsf(a, vehicle=vehicle, bus=cap.frames.bus)) + b"\n" for a in alerts
        )
        if output is None:
            typer.echo(lines.decode(), nl=False)
        else:
            try:
                output.write_bytes(lines)
            except OSError as exc:
                raise ConfigError(f"cannot write {output}: {exc}") from exc
    except FleetopsError as exc:
        raise _fail(exc) from None
    console.print(f"{len(alerts)} alerts over {len(cap.frames)} frames")


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


@ids_app.command("evaluate", cls=MultiValueOptions)
def evaluate_cmd(
    train_files: TrainOption,
    captures: Annotated[list[Path], typer.Option("--capture", help="Labelled capture to score.")],
    fmt: FormatOption = "candump",
    pred: Annotated[
        Path | None, typer.Option("--out", help="PRED.csv: capture,row,score,alert.")
    ] = None,
    dbc: DbcOption = None,
) -> None:
    """Train on --train, score each --capture and print frame/window metrics."""
    try:
        _check_format(fmt)
        model = _train(fmt, train_files, dbc)
        table = Table(title="IDS evaluation")
        for col in (
            "capture",
            "frames",
            "attack",
            "frame P",
            "frame R",
            "frame F1",
            "frame FPR",
            "win P",
            "win R",
            "win F1",
            "win FPR",
            "episodes",
            "latency ms",
            "skipped",
        ):
            table.add_column(col, justify="left" if col == "capture" else "right")
        handle = None
        if pred is not None:
            try:
                handle = pred.open("w", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot write {pred}: {exc}") from exc
            handle.write("capture,row,score,alert\n")
        try:
            for path in captures:
                cap: Capture = load_capture(path, fmt)
                scores = score_frames(model, cap.frames)
                alerts = alerts_from_scores(model, cap.frames, scores)
                m = evaluate(cap.frames.timestamp, cap.truth, scores.alert, alerts)
                table.add_row(
                    cap.name,
                    str(m.frames),
                    str(m.attack_frames),
                    _fmt(m.frame_precision),
                    _fmt(m.frame_recall),
                    _fmt(m.frame_f1),
                    f"{m.frame_fpr:.5f}",
                    _fmt(m.window_precision),
                    _fmt(m.window_recall),
                    _fmt(m.window_f1),
                    f"{m.window_fpr:.5f}",
                    f"{m.episodes_detected}/{m.episodes}",
                    _fmt(m.median_latency_s * 1000),
                    str(sum(cap.skipped.values())),
                )
                if handle is not None:
                    rows = np.arange(len(cap.frames))
                    name = cap.name.replace(",", "_")
                    handle.writelines(
                        f"{name},{i},{s:.6g},{int(a)}\n"
                        for i, s, a in zip(
                            rows.tolist(), scores.score.tolist(), scores.alert.tolist(), strict=True
                        )
                    )
        finally:
            if handle is not None:
                handle.close()
    except FleetopsError as exc:
        raise _fail(exc) from None
    out.print(table)

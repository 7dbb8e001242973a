"""``fleetops maintenance``: train and score remaining-useful-life models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetops.cli_support import console, errors, out
from fleetops.core.errors import ConfigError
from fleetops.maintenance.cmapss import nasa_score, read_cmapss, read_rul, rmse

maintenance_app = typer.Typer(
    help="Predictive maintenance: remaining useful life (RUL) models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@maintenance_app.command()
def cmapss(
    train: Annotated[Path, typer.Option("--train", help="C-MAPSS training file (run-to-failure).")],
    test: Annotated[Path, typer.Option("--test", help="C-MAPSS test file to score.")],
    out_path: Annotated[Path, typer.Option("--out", help="CSV to write: unit,predicted_rul.")],
    rul: Annotated[
        Path | None, typer.Option("--rul", help="True RUL file: print RMSE and NASA score.")
    ] = None,
    model_out: Annotated[
        Path | None, typer.Option("--model-out", help="Folder to save the model artifact in.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="First seed of the ensemble.")] = 0,
    n_seeds: Annotated[int, typer.Option("--n-seeds", min=1, help="Boosters in the ensemble.")] = 3,
) -> None:
    """Train on TRAIN, predict RUL at each TEST unit's last cycle, write OUT."""
    from fleetops.maintenance.model import RulRegressor  # LightGBM: only when training

    with errors():
        train_rows = read_cmapss(train)
        test_rows = read_cmapss(test)
        truth = read_rul(rul, test_rows["unit"].unique().to_list()) if rul is not None else None
        console.print(
            f"training on {train_rows['unit'].n_unique()} units ({train_rows.height} rows)…"
        )
        model = RulRegressor(seed=seed, n_seeds=n_seeds).fit(train_rows)
        pred = model.predict_last(test_rows)
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            pred.write_csv(out_path, float_precision=3)
        except OSError as exc:
            raise ConfigError(f"{out_path}: cannot write ({exc.strerror})") from None
        out.print(f"wrote {pred.height} predictions to {out_path}", highlight=False)
        metrics: dict[str, float] = {}
        if truth is not None:
            joined = pred.join(truth, on="unit", how="inner")
            p = joined["predicted_rul"].to_numpy()
            t = joined["true_rul"].to_numpy()
            metrics = {"rmse": rmse(p, t), "nasa_score": nasa_score(p, t), "units": float(len(p))}
            out.print(f"RMSE: {metrics['rmse']:.2f}")
            out.print(f"NASA score: {metrics['nasa_score']:.1f}")
        if model_out is not None:
            data = {
                "train": str(train),
                "test": str(test),
                "rul": None if rul is None else str(rul),
            }
            model.save(model_out, data=data, metrics=metrics)
            out.print(f"model saved to {model_out}", highlight=False)

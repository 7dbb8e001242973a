"""``fleetops maintenance``: train and score remaining-useful-life models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fleetops.cli_support import console, errors, out
from fleetops.core.errors import ConfigError
from fleetops.maintenance.cmapss import nasa_score, read_cmapss, read_rul, rmse

maintenance_app = typer.Typer(
    help="Predictive maintenance: RUL models (C-MAPSS), fleet failure risk, work orders.",
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


# -- the fleet, from the lake ------------------------------------------------------------
LakeOpt = Annotated[
    Path | None,
    typer.Option("--lake", help="Lake folder (default $FLEETOPS_LAKE or ./fleetops-data/lake)."),
]
ModelOpt = Annotated[
    Path, typer.Option("--model", help="Fleet model artifact folder (from train).")
]


def _open(lake: Path | None) -> Any:
    from fleetops import open_lake

    return open_lake(lake)


def _load(model: Path) -> Any:
    from fleetops.maintenance.fleet import FleetRiskModel

    return FleetRiskModel.load(model)


@maintenance_app.command()
def train(
    model_out: Annotated[Path, typer.Option("--model-out", help="Folder for the model artifact.")],
    lake: LakeOpt = None,
    horizon_h: Annotated[
        list[float] | None, typer.Option("--horizon-h", help="Horizon in hours (repeatable).")
    ] = None,
    bucket_hours: Annotated[float, typer.Option(help="Feature time bucket, hours.")] = 4.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train per-component failure-risk models on the lake's signals and failures."""
    from fleetops.cli_support import progress_bar
    from fleetops.maintenance import pipeline
    from fleetops.maintenance.fleet import COMPONENTS

    horizons = tuple(horizon_h or (24.0, 72.0))
    with errors(), progress_bar(transient=True) as bar:
        task = bar.add_task("reading the lake", total=len(COMPONENTS) * len(horizons))

        def step(key: str) -> None:
            bar.update(task, description=f"training {key}")
            bar.advance(task)

        model = pipeline.train(
            _open(lake),
            model_out,
            horizons_h=horizons,
            bucket_hours=bucket_hours,
            seed=seed,
            progress=step,
        )
    out.print(
        f"trained {len(model.boosters_)} models on {model.train_info_['vehicles']} vehicles "
        f"in {model.train_info_['fit_seconds']:.1f} s; saved to {model_out}",
        highlight=False,
    )


@maintenance_app.command()
def evaluate(model: ModelOpt, lake: LakeOpt = None) -> None:
    """Precision, recall and lead time of the model's alerts against the lake's failures."""
    from fleetops.cli_support import print_table
    from fleetops.maintenance import pipeline

    with errors():
        with console.status("scoring the fleet…"):
            table, scored = pipeline.evaluate(_open(lake), _load(model))
        print_table(table.to_arrow(), title="alerts vs ground-truth failures")
        out.print(
            f"scored {scored.vehicles} vehicles in {scored.seconds:.2f} s "
            f"({scored.vehicles_per_s:,.0f} vehicles/s from the lake)"
        )


@maintenance_app.command()
def predict(
    model: ModelOpt,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Work orders as .csv or .json.")
    ] = None,
    lake: LakeOpt = None,
    write_lake: Annotated[
        bool,
        typer.Option("--write-lake/--no-write-lake", help="Write rul_predictions, work_orders."),
    ] = True,
    risk_plot: Annotated[
        Path | None, typer.Option("--risk-plot", help="PNG of the fleet's risk over time.")
    ] = None,
) -> None:
    """Score the fleet and write the ranked work-order list."""
    import polars as pl

    from fleetops.cli_support import print_table
    from fleetops.maintenance import pipeline
    from fleetops.maintenance.actions import export_work_orders, risk_over_time_figure
    from fleetops.maintenance.plots import save

    with errors():
        with console.status("scoring the fleet…"):
            orders, scored = pipeline.predict(_open(lake), _load(model), write=write_lake)
        brief = orders.select(
            "rank", "vin", "component", "due_by", "confidence",
            pl.col("evidence").str.split("; ").list.first().alias("top driver"),
        )  # fmt: skip
        print_table(brief.to_arrow(), limit=20, title="work orders")
        if out_path is not None:
            export_work_orders(orders, out_path)
            out.print(f"wrote {orders.height} work orders to {out_path}", highlight=False)
        if risk_plot is not None:
            save(risk_over_time_figure(scored.scores), risk_plot)
            out.print(f"risk plot: {risk_plot}", highlight=False)


@maintenance_app.command()
def explain(
    model: ModelOpt,
    vin: Annotated[str, typer.Option("--vin", help="Vehicle to explain.")],
    component: Annotated[str, typer.Option("--component", help="Component model to explain.")],
    lake: LakeOpt = None,
    top: Annotated[int, typer.Option(min=1, help="Drivers to show.")] = 5,
    png: Annotated[Path | None, typer.Option("--png", help="Waterfall plot (PNG).")] = None,
) -> None:
    """Why the model rates this vehicle's component as it does, in words and a plot."""
    from fleetops.cli_support import print_table
    from fleetops.maintenance import pipeline

    with errors():
        table = pipeline.explain(_open(lake), _load(model), vin, component, top=top, png=png)
        print_table(table.to_arrow(), title=f"{vin} {component}: top drivers")
        if png is not None:
            out.print(f"waterfall plot: {png}", highlight=False)

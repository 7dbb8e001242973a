"""``fleetops scale …``: distributed jobs on the configured backend, and ingest workers.

Mounted by the main CLI (``app.add_typer(scale_app, name="scale")``); also runs alone as
``python -m fleetops.scale``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fleetops.cli_support import console, errors, out, progress_bar

scale_app = typer.Typer(
    help="Scale out: distributed jobs (local or Ray backend) and shared-subscription ingest.",
    no_args_is_help=True,
)

BackendOption = Annotated[
    str | None,
    typer.Option(help="local or ray (default: $FLEETOPS_BACKEND, else local)."),
]
AddressOption = Annotated[
    str | None,
    typer.Option(help="Ray cluster address host:port (default: $FLEETOPS_RAY_ADDRESS)."),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(help="Threads (local) or CPUs of a Ray instance started here."),
]
OverwriteOption = Annotated[bool, typer.Option(help="Replace an existing output folder.")]


@contextmanager
def _backend(name: str | None, address: str | None, workers: int | None) -> Iterator[Any]:
    from fleetops.scale.backend import backend_from_config

    backend = backend_from_config(name, address=address, workers=workers)
    try:
        yield backend
    finally:
        backend.close()


def _run_job(title: str, body: Callable[[Callable[[int, int], None]], Any]) -> None:
    with progress_bar() as bar:
        task = bar.add_task(title, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = body(progress)
    view = Table(title=title, show_header=False)
    for key, value in summary.as_dict().items():
        view.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    out.print(view)


@scale_app.command()
def simulate(
    out_dir: Annotated[str, typer.Argument(help="New lake folder (local path or fsspec URL).")],
    scenario: Annotated[str, typer.Option(help="Shipped scenario name or YAML file.")] = "demo",
    vehicles: Annotated[int | None, typer.Option(help="Fleet size (default: scenario's).")] = None,
    days: Annotated[int | None, typer.Option(help="Days to simulate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Scenario seed.")] = None,
    shard_size: Annotated[int, typer.Option(help="Vehicles per shard (one task each).")] = 256,
    backend: BackendOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Simulate a large fleet in parallel shards (deterministic seeds per shard)."""
    from fleetops.scale import jobs
    from fleetops.sim.scenario import Scenario, resolve_scenario

    with errors():
        chosen = Scenario.from_yaml(resolve_scenario(scenario)).with_overrides(days=days, seed=seed)
        with _backend(backend, address, workers) as engine:
            _run_job(
                "simulate",
                lambda p: jobs.simulate(
                    engine,
                    chosen,
                    out_dir,
                    vehicles=vehicles,
                    shard_size=shard_size,
                    overwrite=overwrite,
                    progress=p,
                ),
            )


@scale_app.command("training-data")
def training_data(
    inputs: Annotated[str, typer.Argument(help="Folder of C-MAPSS-shaped Parquet files.")],
    out_dir: Annotated[str, typer.Argument(help="New output folder.")],
    backend: BackendOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Maintenance training data: regime-normalised rolling features and RUL labels."""
    from fleetops.scale import jobs

    with errors(), _backend(backend, address, workers) as engine:
        _run_job(
            "training-data",
            lambda p: jobs.prepare_training(
                engine, inputs, out_dir, overwrite=overwrite, progress=p
            ),
        )


@scale_app.command("score-rul")
def score_rul(
    inputs: Annotated[str, typer.Argument(help="Folder of C-MAPSS-shaped Parquet files.")],
    model: Annotated[Path, typer.Option(help="RulRegressor artifact folder.")],
    out_dir: Annotated[str, typer.Argument(help="New output folder.")],
    backend: BackendOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Batch scoring of remaining useful life at each unit's last cycle."""
    from fleetops.scale import jobs

    with errors(), _backend(backend, address, workers) as engine:
        _run_job(
            "score-rul",
            lambda p: jobs.score_rul(
                engine, inputs, model, out_dir, overwrite=overwrite, progress=p
            ),
        )


@scale_app.command("fleet-risk")
def fleet_risk(
    lake: Annotated[str, typer.Argument(help="Lake folder with a signals table.")],
    out_dir: Annotated[str, typer.Argument(help="New output folder.")],
    model: Annotated[
        Path | None, typer.Option(help="FleetRiskModel artifact (none: features only).")
    ] = None,
    shards: Annotated[
        int | None, typer.Option(help="VIN shards (tasks) of the scan; default 4 per worker.")
    ] = None,
    backend: BackendOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Fleet failure-risk features (training data) and, with --model, calibrated risks."""
    from fleetops.scale import jobs

    with errors(), _backend(backend, address, workers) as engine:
        _run_job(
            "fleet-risk",
            lambda p: jobs.fleet_risk(
                engine,
                lake,
                out_dir,
                model=model,
                shards=shards,
                overwrite=overwrite,
                progress=p,
            ),
        )


@scale_app.command("ids-score")
def ids_score(
    logs: Annotated[list[Path], typer.Argument(help="CAN logs (candump .log, .asc, .blf, …).")],
    model: Annotated[Path, typer.Option(help="Trained IDS model file.")],
    out_dir: Annotated[str, typer.Option("--out", help="New output folder.")],
    backend: BackendOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Score an archive of CAN logs with the IDS (one task per log)."""
    from fleetops.scale import jobs

    with errors(), _backend(backend, address, workers) as engine:
        _run_job(
            "ids-score",
            lambda p: jobs.ids_score(
                engine, [str(x) for x in logs], model, out_dir, overwrite=overwrite, progress=p
            ),
        )


@scale_app.command("sigma-hunt")
def sigma_hunt(
    files: Annotated[list[Path], typer.Argument(help="Event files (any SOC parser format).")],
    rules: Annotated[list[Path], typer.Option(help="Sigma rule files or folders.")],
    out_dir: Annotated[str, typer.Option("--out", help="New output folder.")],
    fmt: Annotated[str, typer.Option("--format", help="Parser format, or auto.")] = "auto",
    backend: BackendOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Hunt with Sigma rules over an archive of event files (one task per file)."""
    from fleetops.scale import jobs

    with errors(), _backend(backend, address, workers) as engine:
        _run_job(
            "sigma-hunt",
            lambda p: jobs.sigma_hunt(
                engine,
                [str(x) for x in files],
                list(rules),
                out_dir,
                fmt=fmt,
                overwrite=overwrite,
                progress=p,
            ),
        )


@scale_app.command()
def ingest(
    broker: Annotated[str, typer.Option(help="MQTT 5 broker, e.g. mqtt://localhost:1883.")],
    group: Annotated[str, typer.Option(help="Share group: the workers that split the stream.")],
    worker: Annotated[str, typer.Option(help="This worker's name, unique in the group.")],
    lake: Annotated[Path | None, typer.Option(help="Lake folder (default $FLEETOPS_LAKE).")] = None,
    prefix: Annotated[str, typer.Option(help="MQTT topic prefix.")] = "fleetops/v1",
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without a message.")
    ] = None,
    batch_messages: Annotated[int, typer.Option(help="Messages per committed batch.")] = 5000,
    retire: Annotated[
        bool,
        typer.Option(
            help="Leave the group for good: unsubscribe, ingest what the session still "
            "holds until idle (--idle-timeout, default 5 s), end the session."
        ),
    ] = False,
) -> None:
    """One ingest worker of a group sharing a subscription ($share/GROUP/…)."""
    from fleetops.config import lake_dir
    from fleetops.scale.ingest import run_worker

    with errors():
        with console.status(f"ingest worker {group}/{worker} from {broker}") as status:
            stats = run_worker(
                broker,
                lake or lake_dir(),
                group=group,
                worker=worker,
                prefix=prefix,
                batch_messages=batch_messages,
                idle_timeout=5.0 if retire and idle_timeout is None else idle_timeout,
                retire=retire,
                on_batch=lambda s: status.update(
                    f"{group}/{worker}: {s.messages:,} messages, {s.values:,} values, "
                    f"{s.duplicates:,} duplicates"
                ),
                handle_signals=True,
            )
        view = Table(title=f"ingest {group}/{worker}", show_header=False)
        for key, value in stats.as_dict().items():
            view.add_row(key, str(value))
        out.print(view)


@scale_app.command()
def info(
    backend: BackendOption = None,
    address: AddressOption = None,
    workers: WorkersOption = None,
) -> None:
    """Connect to the configured backend and show what it offers."""
    with errors(), _backend(backend, address, workers) as engine:
        out.print(f"backend {engine.name}: {engine.workers} worker CPU(s)")

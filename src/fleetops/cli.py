"""The ``fleetops`` command line: a thin layer over the Python API.

Exit codes: 0 success, 1 unexpected failure, 2 bad input or configuration, 3 a server
could not be reached, 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.table import Table

from fleetops import config
from fleetops.api.serve import serve_command
from fleetops.cli_support import console, errors, out, print_table, progress_bar
from fleetops.core.lake import Lake
from fleetops.footprint.cli import footprint_app
from fleetops.maintenance.cli import maintenance_app
from fleetops.ota.cli import ota_app
from fleetops.scale.cli import scale_app
from fleetops.security.ids.cli import ids_app
from fleetops.security.soc.cli import soc_app

app = typer.Typer(
    name="fleetops",
    help="Operate a connected vehicle fleet: simulate, ingest, query, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(footprint_app, name="footprint")
app.add_typer(ids_app, name="ids")
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(ota_app, name="ota")
app.add_typer(scale_app, name="scale")
app.add_typer(soc_app, name="soc")
app.command("serve")(serve_command)
LakeOption = Annotated[
    Path | None,
    typer.Option("--lake", help="Lake folder (default: $FLEETOPS_LAKE or ./fleetops-data/lake)."),
]


def _lake(path: Path | None) -> Lake:
    return Lake(path if path is not None else config.lake_dir())


# -- commands -------------------------------------------------------------------------------


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL over the lake's tables (signals, vehicles, …).")],
    lake: LakeOption = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, csv, json or parquet.")
    ] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
    limit: Annotated[int, typer.Option(help="Rows shown in table format.")] = 50,
) -> None:
    """Run SQL over the lake with DuckDB.

    Example: fleetops query "SELECT signal, avg(value) FROM signals GROUP BY 1"
    """
    with errors():
        result = _lake(lake).query(sql)
        if fmt == "table":
            print_table(result, limit=limit)
            return
        if fmt == "parquet" and output is None:
            raise typer.BadParameter("parquet output needs --output FILE")
        sink: Any = output if output is not None else sys.stdout.buffer
        if fmt == "csv":
            pacsv.write_csv(result, sink)
        elif fmt == "json":
            data = orjson.dumps(result.to_pylist(), option=orjson.OPT_NAIVE_UTC, default=str)
            if output is None:
                sys.stdout.buffer.write(data + b"\n")
            else:
                output.write_bytes(data)
        elif fmt == "parquet":
            pq.write_table(result, sink)
        else:
            raise typer.BadParameter(f"unknown format {fmt!r}: table, csv, json or parquet")


@app.command()
def tables(lake: LakeOption = None) -> None:
    """List the lake's tables with their row counts."""
    with errors():
        store = _lake(lake)
        names = store.tables()
        if not names:
            console.print(f"the lake at {store.root} is empty")
            return
        counts = store.query(
            " UNION ALL ".join(
                f"SELECT '{n}' AS table_name, count(*) AS rows FROM {n}" for n in names
            )
        )
        print_table(counts)


@app.command()
def catalog(
    match: Annotated[str, typer.Argument(help="Show only paths containing this.")] = "",
) -> None:
    """List the VSS signals fleetops knows (path, datatype, unit, range)."""
    from fleetops.core.vss import default_catalog

    specs = default_catalog()
    rows = [
        {
            "path": s.path,
            "datatype": s.datatype.value,
            "unit": s.unit or "",
            "min": s.min,
            "max": s.max,
        }
        for s in specs.values()
        if match.lower() in s.path.lower()
    ]
    print_table(pa.Table.from_pylist(rows), limit=len(rows) or 1, title=f"VSS {specs.vss_version}")


def main() -> None:  # pragma: no cover - console entry point
    app()


@app.command()
def ingest(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Message files (.jsonl, one vehicle message a line) to ingest."),
    ] = None,
    broker: Annotated[
        str | None, typer.Option(help="Subscribe to this MQTT broker, e.g. mqtt://localhost:1883.")
    ] = None,
    lake: LakeOption = None,
    consumer: Annotated[
        str, typer.Option(help="Name of this ingest process (its commit log and MQTT session).")
    ] = "ingest",
    prefix: Annotated[str, typer.Option(help="MQTT topic prefix.")] = "fleetops/v1",
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without a message.")
    ] = None,
    max_messages: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    batch_messages: Annotated[int, typer.Option(help="Messages per committed batch.")] = 5000,
) -> None:
    """Ingest vehicle messages into the lake, from an MQTT broker or from files.

    Each batch is committed before it is acknowledged (at-least-once delivery) and
    messages already committed are dropped by (VIN, seq): a crash loses nothing and
    duplicates nothing. Bad messages go to the dead_letter table with their reason.
    """
    from fleetops.telemetry.ingest import Ingestor, read_message_file

    with errors():
        if (broker is None) == (not files):
            raise typer.BadParameter("give either message FILES or --broker URL")
        store = _lake(lake)
        ingestor = Ingestor(store, consumer=consumer)
        if broker is not None:
            from fleetops.telemetry.mqtt import MqttIngest

            source = MqttIngest(
                broker,
                ingestor,
                prefix=prefix,
                client_id=f"fleetops-{consumer}",
                batch_messages=batch_messages,
            )
            with console.status(f"ingesting from {broker} into {store.root}") as status:
                stats = source.run(
                    idle_timeout=idle_timeout,
                    max_messages=max_messages,
                    on_batch=lambda s: status.update(
                        f"{s.messages:,} messages, {s.values:,} values, "
                        f"{s.dead_letters:,} dead letters, {s.duplicates:,} duplicates"
                    ),
                    handle_signals=True,
                )
        else:
            assert files is not None
            with progress_bar() as bar:
                for path in files:
                    if not path.is_file():
                        raise typer.BadParameter(f"{path} is not a file")
                    task = bar.add_task(path.name, total=path.stat().st_size)
                    for batch in read_message_file(path, batch_messages=batch_messages):
                        ingestor.ingest(batch)
                        bar.update(task, advance=sum(len(m.payload) + 1 for m in batch))
            ingestor.close()
            stats = ingestor.stats
        _print_stats(stats.as_dict())


def _print_stats(stats: dict[str, Any]) -> None:
    view = Table(title="ingest", show_header=False)
    for key, value in stats.items():
        view.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    out.print(view)


@app.command()
def simulate(
    scenario: Annotated[
        str, typer.Option(help="Shipped scenario name (demo, smoke) or a YAML file.")
    ] = "demo",
    vehicles: Annotated[int | None, typer.Option(help="Override the fleet size.")] = None,
    days: Annotated[int | None, typer.Option(help="Override the number of days.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the random seed.")] = None,
    lake: LakeOption = None,
    publish: Annotated[
        str | None,
        typer.Option(help="Publish the telemetry to this MQTT broker instead of the lake."),
    ] = None,
    messages: Annotated[
        Path | None,
        typer.Option(help="Write the telemetry as vehicle messages (.jsonl) instead of the lake."),
    ] = None,
    samples_per_message: Annotated[
        int, typer.Option(help="Samples a vehicle buffers per message.")
    ] = 60,
) -> None:
    """Simulate a fleet (drive cycles, charging, wear, faults, DTCs) deterministically.

    By default everything goes into the lake. With --publish or --messages the telemetry
    leaves as the vehicles would send it, and the inventory (vehicles, ECUs), DTCs and the
    failure ground truth still go into the lake.
    """
    from fleetops.sim.fleet import simulate_fleet
    from fleetops.sim.scenario import load_scenario

    with errors():
        if publish is not None and messages is not None:
            raise typer.BadParameter("choose --publish or --messages, not both")
        plan = load_scenario(scenario).with_overrides(vehicles=vehicles, days=days, seed=seed)
        store = _lake(lake)
        with progress_bar() as bar:
            task = bar.add_task("simulating", total=plan.vehicle_days)
            sim = simulate_fleet(plan, progress=lambda n: bar.update(task, advance=n))
            if publish is None and messages is None:
                with console.status("writing to the lake"):
                    sim.write_to(store)
            else:
                store.replace("vehicles", sim.vehicles_table())
                store.replace("ecus", sim.ecus_table())
                store.replace("failures", sim.failures)
                store.write("dtcs", sim.dtcs)
                total = -(-sim.sample_count // samples_per_message)
                sent = bar.add_task("publishing" if publish else "writing messages", total=total)
                stream = sim.messages(samples_per_message)
                if publish is not None:
                    from fleetops.telemetry.mqtt import publish_messages

                    publish_messages(
                        publish, stream, on_progress=lambda n: bar.update(sent, advance=n)
                    )
                else:
                    assert messages is not None
                    with messages.open("wb") as sink:
                        for _, payload in stream:
                            sink.write(payload + b"\n")
                            bar.update(sent, advance=1)
                bar.update(sent, completed=total)
        summary = sim.summary()
        view = Table(title=f"scenario {plan.name}", show_header=False)
        for key, value in summary.items():
            view.add_row(
                key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value)
            )
        out.print(view)
        target = publish or messages or store.root
        out.print(f"telemetry → {target}; inventory, DTCs and failures → {store.root}")


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Loopback port to listen on.")] = 1883,
) -> None:
    """Run a local Mosquitto MQTT broker for development (Ctrl-C stops it).

    Needs the mosquitto binary (Debian/Ubuntu: apt-get install mosquitto). It keeps every
    message for an ingest that is down, so nothing is lost while ingest restarts.
    """
    from fleetops.telemetry.broker import LocalMosquitto

    with errors():
        local = LocalMosquitto(port=port).start()
        out.print(f"MQTT broker listening at {local.url} (Ctrl-C stops it)")
        try:
            local.wait()
        finally:
            local.stop()


can_app = typer.Typer(help="CAN level: simulate a bus with attacks, decode logs with a DBC.")
app.add_typer(can_app, name="can")

CAN_LOG_SUFFIXES = (".log", ".asc", ".blf", ".csv", ".trc", ".parquet")


@can_app.command("simulate")
def can_simulate(
    output: Annotated[
        Path,
        typer.Argument(help="Where the frames go: .log (candump), .asc, .blf, .csv or .parquet."),
    ],
    scenario: Annotated[
        str | None,
        typer.Option(
            help="Scenario name or YAML file whose 'can:' section to run (default: none)."
        ),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of bus traffic.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Write the attacks' ground truth here (.parquet or .csv).")
    ] = None,
) -> None:
    """Generate one vehicle's CAN traffic (cycle times, counters, CRCs) with labelled attacks.

    Parquet output keeps a per-frame 'label' column (the attack type, empty if normal).
    """
    from fleetops.sim.can import simulate_can
    from fleetops.sim.scenario import load_scenario
    from fleetops.telemetry.canlog import write_can_log

    with errors():
        section: dict[str, Any] = dict(load_scenario(scenario).can) if scenario else {}
        if duration is not None:
            section["duration_s"] = duration
        if seed is not None:
            section["seed"] = seed
        with console.status("simulating the bus"):
            sim = simulate_can(section)
        _write_frames(sim.frames, output, write_can_log)
        if truth is not None:
            _write_table(sim.attacks, truth)
        attacked = int((sim.attack_index >= 0).sum())
        out.print(
            f"{len(sim.frames):,} frames over {sim.scenario.duration_s:g} s, {attacked:,} injected "
            f"by {sim.attacks.num_rows} attack(s) → {output}"
        )


def _write_frames(frames: Any, output: Path, write_can_log: Callable[[Any, Path], Path]) -> None:
    if output.suffix == ".parquet":
        pq.write_table(frames.to_arrow(), output)
    elif output.suffix in CAN_LOG_SUFFIXES:
        write_can_log(frames, output)
    else:
        raise typer.BadParameter(f"{output.suffix!r}: use one of {', '.join(CAN_LOG_SUFFIXES)}")


def _write_table(table: pa.Table, output: Path) -> None:
    if output.suffix == ".csv":
        pacsv.write_csv(table, output)
    else:
        pq.write_table(table, output)


@can_app.command("decode")
def can_decode(
    log: Annotated[Path, typer.Argument(help="CAN log: .log, .asc, .blf, .csv, .trc or .parquet.")],
    dbc: Annotated[
        Path | None, typer.Option(help="DBC file (default: the shipped fleetops EV DBC).")
    ] = None,
    vin: Annotated[
        str | None,
        typer.Option(help="Store the frames and their VSS signals in the lake under this VIN."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write every decoded signal (long format) to .parquet/.csv.")
    ] = None,
    lake: LakeOption = None,
) -> None:
    """Decode a CAN log into signals with a DBC (vectorised over all frames)."""
    import time

    import pyarrow.compute as pc

    from fleetops.core.dbc import load_dbc
    from fleetops.core.types import CanFrames, validate_vin
    from fleetops.telemetry.can_decode import CanDecoder
    from fleetops.telemetry.canlog import read_can_log

    with errors():
        if vin is None and output is None:
            raise typer.BadParameter("give --vin (store in the lake) and/or --output FILE")
        with console.status(f"reading {log}"):
            frames = (
                CanFrames.from_arrow(pq.read_table(log))
                if log.suffix == ".parquet"
                else read_can_log(log)
            )
        decoder = CanDecoder(load_dbc(dbc))
        start = time.perf_counter()
        decoded = decoder.decode(frames)
        elapsed = time.perf_counter() - start
        if output is not None:
            _write_table(decoded, output)
        stored = 0
        if vin is not None:
            store = _lake(lake)
            vin = validate_vin(vin)
            raw = frames.to_arrow()
            if "label" in raw.column_names:
                raw = raw.drop_columns(["label"])
            store.write("can_frames", raw)
            signals = decoder.to_signals(frames, vin)
            store.write("signals", signals)
            stored = signals.num_rows
        stats = decoder.stats
        unknown = ", ".join(f"0x{i:X}" for i, _ in stats.unknown_ids.most_common(5))
        out.print(
            f"{len(frames):,} frames → {decoded.num_rows:,} signal values in {elapsed:.2f} s "
            f"({len(frames) / max(elapsed, 1e-9):,.0f} frames/s); "
            f"{len(pc.unique(decoded.column('signal'))) if decoded.num_rows else 0} signals"
            + (f"; {stored:,} VSS values stored for {vin}" if vin else "")
            + (f"; {stats.unknown_frames:,} frames of unknown ids ({unknown})" if unknown else "")
        )


@app.command()
def demo(
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for the lake and report (default: ./fleetops-data/demo)."
        ),
    ] = None,
    scenario: Annotated[str, typer.Option(help="Shipped scenario name or YAML file.")] = "demo",
    vehicles: Annotated[
        int | None, typer.Option(help="Override the scenario's fleet size.")
    ] = None,
    days: Annotated[int | None, typer.Option(help="Override the scenario's days.")] = None,
) -> None:
    """End to end on the embedded default (no server): simulate, ingest, query, report."""
    from fleetops.demo import run_demo

    target = out_dir if out_dir is not None else config.data_dir() / "demo"
    with errors(), progress_bar() as bar:

        def step(description: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(description, total=total)
            return lambda advance: bar.update(task, advance=advance)

        result = run_demo(target, scenario=scenario, vehicles=vehicles, days=days, step=step)
        for task in bar.tasks:  # estimates made at the start may be a little off
            bar.update(task.id, completed=task.total)
    view = Table(title="fleetops demo", show_header=False)
    for key, value in result.summary.items():
        view.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    for key, seconds in result.timings.items():
        view.add_row(f"time: {key}", f"{seconds:.1f} s")
    out.print(view)
    out.print(f"lake: {result.lake.root}   report: {result.report}")
    out.print(f'try:  fleetops query --lake {result.lake.root} "SELECT * FROM vehicles LIMIT 5"')

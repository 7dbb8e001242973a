"""Console API and dashboard: requests/s and p99 latency of the main read endpoints and
pages on a 10 k fleet, and each page's first (cold) load.

    .venv/bin/python -m bench.api [--vehicles 10000] [--seconds 3] [--concurrency 8]
                                  [--predictions] [--only overview,vehicle]

The lake is simulated once (``smoke`` scenario, one day, ``--vehicles`` vehicles) under
``<data dir>/bench/api-<n>``. ``fleetops serve``'s app runs in its own process (uvicorn, one
worker); the load comes from this process over loopback: ``--concurrency`` connections
with keep-alive, each sending its next request when the last answered, for ``--seconds``
per endpoint, after a warm-up. Every request carries a bearer token, so authentication,
the permission check and the JSON encoding are all measured. The time series is measured
twice: one vehicle over and over (as a vehicle page asks for several signals of one
vehicle, whose rows the console keeps decoded), and ``ROTATE`` vehicles in turn, more than
it keeps, so that every request reads the lake.

Baseline, in the same run: a bare FastAPI app in its own uvicorn process whose route
returns, as static bytes, the very response body our endpoint produced — same size, same
client, no lake, no auth. The ratio is the share of the bare framework's throughput that
the console keeps.

Dashboard pages are requested as a signed-in user sees them (the session cookie of
``admin``, from the sign-in API), under the same load and against the same baseline. The
console they read is sized to the fleet: an OTA campaign over every BMS (its first wave
installed, a few failures), SOC incidents on ``INCIDENT_VEHICLES`` vehicles and a
footprint plan of ``PLAN_WORKLOADS`` workloads, all made here, in the run's temporary
folder. The cold column is each page's first load right after the server started, in
table order: the fleet overview's includes building the fleet snapshot (its build time is
in the title), the others find it built.

``--predictions`` serves a lake that also holds the maintenance tables, as
``fleetops maintenance predict`` leaves them: a fleet risk model, trained once on a small
simulated fleet (``TRAIN_VEHICLES`` vehicles, ``TRAIN_DAYS`` days, the maintenance docs'
risk scenario; ≈ 40 s, kept under ``<data dir>/bench/api-model``), scores every bucket of
every vehicle of the bench fleet, and :func:`fleetops.maintenance.pipeline.predict` writes
its ``rul_predictions`` and ranked ``work_orders`` through the package's own writer. That
lake (``api-<n>-rul``) hard-links the plain lake's files, so the plain one stays as it is.
``--only`` keeps the cases whose label holds one of the given words.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.common import Row, print_table
from fleetops.config import data_dir

ROTATE = 1000  # more vehicles than the console keeps decoded: every request reads the lake
ENDPOINTS = [
    ("fleet summary", "/api/v1/fleet/summary"),
    ("vehicle list, page of 50", "/api/v1/vehicles?limit=50&offset=5000"),
    ("vehicle list, filtered + sorted", "/api/v1/vehicles?region=madrid&sort=soc&limit=50"),
    ("vehicle detail", "/api/v1/vehicles/{vin}"),
    ("signal series, 300 points", "/api/v1/vehicles/{vin}/series?signal=Vehicle.Speed&points=300"),
    (
        f"same, {ROTATE:,} vehicles in turn",
        "/api/v1/vehicles/{each}/series?signal=Vehicle.Speed&points=300",
    ),
    ("DTC page", "/api/v1/dtcs?limit=50"),
]
PAGES = [
    ("page: fleet overview", "/"),
    ("page: vehicle", "/vehicles/{vin}"),
    (f"page: vehicle, {ROTATE:,} vehicles in turn", "/vehicles/{each}"),
    ("page: incident queue", "/incidents"),
    ("page: campaign", "/campaigns/{campaign}"),
    ("page: footprint plan", "/footprint/{plan}"),
]
TRAIN_VEHICLES, TRAIN_DAYS = 80, 8  # enough failures of each component to learn from
ADMIN_PASSWORD = "bench-admin-password"
INCIDENT_VEHICLES = 400
PLAN_WORKLOADS = 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def build_lake(vehicles: int) -> Path:
    import fleetops
    from fleetops.core.lake import Lake

    folder = data_dir() / "bench" / f"api-{vehicles}"
    if folder.is_dir():
        n = Lake(folder).query("SELECT count(*) AS n FROM vehicles").to_pylist()[0]["n"]
        if n == vehicles:
            return folder
    start = time.perf_counter()
    fleetops.simulate("smoke", vehicles=vehicles, days=1, lake=folder)
    print(f"simulated {vehicles:,} vehicles into {folder} in {time.perf_counter() - start:.0f} s")
    return folder


def add_predictions(lake: Path) -> Path:
    """``lake`` plus the maintenance tables a real model's predictions make for its fleet."""
    from fleetops.core.lake import Lake
    from fleetops.maintenance import pipeline
    from fleetops.maintenance.fleet import FleetRiskModel, risk_scenario
    from fleetops.sim import simulate_fleet

    folder = lake.with_name(lake.name + "-rul")
    if any(Lake(folder).files("work_orders")):
        return folder
    model_dir = data_dir() / "bench" / "api-model"
    if (model_dir / "model_card.json").is_file():
        model = FleetRiskModel.load(model_dir)
    else:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            train = Lake(tmp)
            scenario = risk_scenario(vehicles=TRAIN_VEHICLES, days=TRAIN_DAYS, seed=1)
            simulate_fleet(scenario).write_to(train)
            model = pipeline.train(train, model_dir)
        print(f"trained the fleet risk model in {time.perf_counter() - start:.0f} s")
    shutil.rmtree(folder, ignore_errors=True)
    for path in lake.rglob("*.parquet"):  # published files never change: links, not copies
        target = folder / path.relative_to(lake)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    start = time.perf_counter()
    orders, scored = pipeline.predict(folder, model)
    print(
        f"scored {scored.vehicles:,} vehicles ({scored.scores.height:,} predictions, "
        f"{scored.seconds:.0f} s) and wrote {orders.height:,} work orders in "
        f"{time.perf_counter() - start:.0f} s"
    )
    return folder


def make_campaign(lake: Path, root: Path) -> str:
    """A running rollout to every BMS of the fleet, its first wave installed (2 % failed)."""
    from fleetops.core.lake import Lake
    from fleetops.ota.rollout.campaign import Campaign, Image, Release, waves_from_shares
    from fleetops.ota.rollout.cohort import CohortSpec
    from fleetops.ota.rollout.store import CampaignStore

    source = Lake(lake)
    ecus = source.read("ecus")
    bms = sorted({r["hardware_id"] for r in ecus.to_pylist() if r["ecu"] == "BMS"})
    release = Release(
        "BMS 9.9",
        {h: Image(f"{h}-9.9.0.bin", "9.9.0") for h in bms},
        {h: Image(f"{h}-1.0.0.bin", "1.0.0") for h in bms},
    )
    t0 = 1_767_600_000.0
    campaign = Campaign.create(
        "BMS 9.9 rollout",
        release,
        CohortSpec.of(ecu="BMS"),
        source.read("vehicles"),
        ecus,
        waves=waves_from_shares([5, 25, 100]),
        campaign_id="cmp-bench",
        time=t0,
    )
    campaign.start("release-bot", "bench", time=t0)
    first = np.flatnonzero(campaign.members.get_column("wave").to_numpy() == 0).astype(np.int64)
    rng = np.random.default_rng(0)
    campaign.record_installs(
        first, rng.random(first.size) > 0.02, t0 + rng.uniform(60, 3600, first.size)
    )
    CampaignStore(root).save(campaign)
    return campaign.campaign_id


def make_incidents(path: Path, vins: list[str]) -> int:
    """SOC incidents correlated from OCSF findings on ``vins``: a few alerts per vehicle."""
    from fleetops.core.ocsf import findings_from_records
    from fleetops.security.soc.correlate import correlate
    from fleetops.security.soc.store import IncidentStore

    t0 = 1_767_600_000_000  # 2026-01-05 08:00 UTC, inside the smoke scenario
    rows: list[dict[str, object]] = [
        {
            "time": t0 + v * 60_000 + i * 90_000,
            "finding_uid": f"can-{v}-{i}",
            "source": "ids",
            "rule_id": "ids.can.injection" if (v + i) % 2 else "ids.can.timing",
            "title": "CAN frame injection" if (v + i) % 2 else "CAN timing anomaly",
            "severity_id": 3 + (v + i) % 3,
            "techniques": ["T0855"],
            "domain": "vehicle",
            "vin": vin,
            "source_file": "bus.log",
            "record_index": i,
            "evidence": "{}",
        }
        for v, vin in enumerate(vins)
        for i in range(1 + v % 4)
    ]
    incidents = correlate(findings_from_records(rows))
    with IncidentStore.sqlite(path) as store:
        store.save(incidents)
    return len(incidents)


def make_plan(root: Path) -> str:
    """A footprint plan of ``PLAN_WORKLOADS`` workloads, written by the planner itself."""
    from fleetops.footprint import SolveOptions, TargetType, build_demand, solve, summarise
    from fleetops.footprint.report import write_plan
    from fleetops.footprint.synth import generate

    inventory = generate(PLAN_WORKLOADS, seed=3, days=1)
    target = TargetType("2s-32c-256g", 32, 256)
    demand = build_demand(inventory.workloads, 95.0, True)
    plan = solve(inventory.workloads, demand, inventory.hosts, target, SolveOptions(time_limit=5.0))
    write_plan(root / "bench", plan, demand, summarise(inventory, plan, target), inventory.notes)
    return "bench"


def serve_ours(lake: str, work: str, port: int) -> None:
    import uvicorn

    from fleetops.api.app import create_app
    from fleetops.api.settings import Settings

    folder = Path(work)
    settings = Settings.load(
        lake=lake,
        store=str(folder / "console.sqlite"),
        admin_password=ADMIN_PASSWORD,
        footprint_plans=folder / "plans",
        campaigns=folder / "campaigns",
        incidents=folder / "incidents.sqlite",
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def serve_baseline(bodies: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI, Response

    payloads = [p.read_bytes() for p in sorted(Path(bodies).glob("*.body"))]
    types = [p.read_text() for p in sorted(Path(bodies).glob("*.type"))]
    app = FastAPI()

    @app.get("/static/{index}")
    def static(index: int) -> Response:
        return Response(payloads[index], media_type=types[index])

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.api", *args, "--port", str(port)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server {args[:2]} did not start")


async def load(
    urls: list[str], headers: dict[str, str], seconds: float, concurrency: int
) -> tuple[float, float]:
    """(requests/s, p99 latency in ms) over ``seconds`` with ``concurrency`` workers, which
    take ``urls`` in turn."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    turn = itertools.cycle(urls)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        for _ in range(concurrency):  # warm-up: connections, caches
            (await client.get(next(turn))).raise_for_status()
        latencies: list[float] = []
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                response = await client.get(next(turn))
                latencies.append(time.perf_counter() - t0)
                response.raise_for_status()

        begin = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - begin
    return len(latencies) / elapsed, float(np.percentile(latencies, 99) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--predictions", action="store_true", help="with maintenance tables")
    parser.add_argument("--only", help="comma-separated words: cases whose label holds one")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "WHAT"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, what = args.serve
        if kind == "ours":
            serve_ours(what, args.work, args.port)
        else:
            serve_baseline(what, args.port)
        return

    lake = build_lake(args.vehicles)
    if args.predictions:
        lake = add_predictions(lake)
    work = Path(tempfile.mkdtemp(prefix="fleetops-bench-api-"))
    from fleetops.api.auth import new_token_secret
    from fleetops.api.store import Store
    from fleetops.core.lake import Lake

    started = time.perf_counter()
    vins = sorted(Lake(lake).query("SELECT vin FROM vehicles").column("vin").to_pylist())
    names = {
        "campaign": make_campaign(lake, work / "campaigns"),
        "plan": make_plan(work / "plans"),
    }
    incidents = make_incidents(work / "incidents.sqlite", vins[:: len(vins) // INCIDENT_VEHICLES])
    print(
        f"campaign, {incidents:,} incidents and a {PLAN_WORKLOADS}-workload footprint plan "
        f"made in {time.perf_counter() - started:.0f} s"
    )
    ours_port, base_port = free_port(), free_port()
    ours = start(["--serve", "ours", str(lake), "--work", str(work)], ours_port)
    procs = [ours]
    try:
        base = f"http://127.0.0.1:{ours_port}"
        store = Store(str(work / "console.sqlite"))
        admin = store.credentials("admin")
        assert admin is not None
        secret = new_token_secret()
        store.create_token(admin[0].id, "bench", secret, None)
        store.close()
        headers = {"Authorization": f"Bearer {secret}"}
        signed_in = httpx.post(
            base + "/api/v1/session", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        signed_in.raise_for_status()
        cookies = {"Cookie": "; ".join(f"{k}={v}" for k, v in signed_in.cookies.items())}
        vin = vins[777]
        cold: dict[str, float] = {}
        for label, path in PAGES:  # first loads, on a server that has served none
            if "{each}" not in path:
                t0 = time.perf_counter()
                page = httpx.get(base + path.format(vin=vin, **names), headers=cookies, timeout=300)
                page.raise_for_status()
                cold[label] = time.perf_counter() - t0
        summary = httpx.get(base + "/api/v1/fleet/summary", headers=headers).json()
        fleet = httpx.get(base + f"/api/v1/vehicles?limit={ROTATE}", headers=headers).json()
        bodies = work / "bodies"
        bodies.mkdir()
        cases = [(label, path, headers) for label, path in ENDPOINTS] + [
            (label, path, cookies) for label, path in PAGES
        ]
        if args.only:
            words = args.only.split(",")
            cases = [case for case in cases if any(w in case[0] for w in words)]
        urls = [
            [p.format(vin=vin, each=v["vin"], **names) for v in fleet["items"]]
            if "{each}" in p
            else [p.format(vin=vin, **names)]
            for _, p, _ in cases
        ]
        for i, ((*_, auth), (path, *_)) in enumerate(zip(cases, urls, strict=True)):
            response = httpx.get(base + path, headers=auth, timeout=60)
            response.raise_for_status()
            (bodies / f"{i:02d}.body").write_bytes(response.content)
            media = response.headers["content-type"].split(";")[0]
            (bodies / f"{i:02d}.type").write_text(media)
        procs.append(start(["--serve", "baseline", str(bodies)], base_port))
        rows, latency = [], Table(title="p99 latency, ms (same load); first load of each page")
        for column in ("case", "response bytes", "ours", "baseline", "cold first load"):
            latency.add_column(column, justify="left" if column == "case" else "right")
        for i, ((label, _, auth), paths) in enumerate(zip(cases, urls, strict=True)):
            ours_rps, ours_p99 = asyncio.run(
                load([base + p for p in paths], auth, args.seconds, args.concurrency)
            )
            static = f"http://127.0.0.1:{base_port}/static/{i}"  # the first vehicle's body
            base_rps, base_p99 = asyncio.run(load([static], {}, args.seconds, args.concurrency))
            rows.append(Row(label, ours_rps, base_rps, "req/s"))
            size = (bodies / f"{i:02d}.body").stat().st_size
            first = f"{cold[label] * 1000:,.0f}" if label in cold else ""
            latency.add_row(label, f"{size:,}", f"{ours_p99:.1f}", f"{base_p99:.1f}", first)
        print_table(
            f"console API and dashboard on {args.vehicles:,} vehicles, {args.concurrency} "
            f"concurrent connections, {args.seconds:g} s each (fleet snapshot built in "
            f"{summary['snapshot_seconds']:.1f} s)",
            rows,
            "fleetops serve",
            "bare FastAPI, same bytes",
        )
        Console(width=120).print(latency)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

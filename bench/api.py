"""Console API: requests/s and p99 latency of the main read endpoints on a 10 k fleet.

    .venv/bin/python -m bench.api [--vehicles 10000] [--seconds 3] [--concurrency 8]

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
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
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


def serve_ours(lake: str, store: str, port: int) -> None:
    import uvicorn

    from fleetops.api.app import create_app
    from fleetops.api.settings import Settings

    settings = Settings.load(lake=lake, store=store, admin_password="bench-admin-password")
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def serve_baseline(bodies: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI, Response

    payloads = [p.read_bytes() for p in sorted(Path(bodies).glob("*.json"))]
    app = FastAPI()

    @app.get("/static/{index}")
    def static(index: int) -> Response:
        return Response(payloads[index], media_type="application/json")

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
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "WHAT"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, what = args.serve
        if kind == "ours":
            serve_ours(what, args.store, args.port)
        else:
            serve_baseline(what, args.port)
        return

    lake = build_lake(args.vehicles)
    work = Path(tempfile.mkdtemp(prefix="fleetops-bench-api-"))
    store_path = str(work / "console.sqlite")
    from fleetops.api.auth import new_token_secret
    from fleetops.api.store import Store

    ours_port, base_port = free_port(), free_port()
    ours = start(["--serve", "ours", str(lake), "--store", store_path], ours_port)
    procs = [ours]
    try:
        store = Store(store_path)
        admin = store.credentials("admin")
        assert admin is not None
        secret = new_token_secret()
        store.create_token(admin[0].id, "bench", secret, None)
        store.close()
        headers = {"Authorization": f"Bearer {secret}"}
        base = f"http://127.0.0.1:{ours_port}"
        started = time.perf_counter()
        first = httpx.get(base + "/api/v1/fleet/summary", headers=headers, timeout=300)
        first.raise_for_status()
        cold = time.perf_counter() - started
        fleet = httpx.get(base + f"/api/v1/vehicles?limit={ROTATE}", headers=headers).json()
        vin = httpx.get(base + "/api/v1/vehicles?limit=1&offset=777", headers=headers).json()[
            "items"
        ][0]["vin"]
        bodies = work / "bodies"
        bodies.mkdir()
        urls = [
            [p.format(vin=vin, each=v["vin"]) for v in fleet["items"]]
            if "{each}" in p
            else [p.format(vin=vin)]
            for _, p in ENDPOINTS
        ]
        for i, (path, *_) in enumerate(urls):
            response = httpx.get(base + path, headers=headers, timeout=60)
            response.raise_for_status()
            (bodies / f"{i:02d}.json").write_bytes(response.content)
        procs.append(start(["--serve", "baseline", str(bodies)], base_port))
        rows, latency = [], Table(title="p99 latency, ms (same load)")
        for column in ("case", "response bytes", "ours", "baseline"):
            latency.add_column(column, justify="left" if column == "case" else "right")
        for i, ((label, _), paths) in enumerate(zip(ENDPOINTS, urls, strict=True)):
            ours_rps, ours_p99 = asyncio.run(
                load([base + p for p in paths], headers, args.seconds, args.concurrency)
            )
            static = f"http://127.0.0.1:{base_port}/static/{i}"  # the first vehicle's body
            base_rps, base_p99 = asyncio.run(load([static], {}, args.seconds, args.concurrency))
            rows.append(Row(label, ours_rps, base_rps, "req/s"))
            size = (bodies / f"{i:02d}.json").stat().st_size
            latency.add_row(label, f"{size:,}", f"{ours_p99:.1f}", f"{base_p99:.1f}")
        print_table(
            f"console API on {args.vehicles:,} vehicles, {args.concurrency} concurrent "
            f"connections, {args.seconds:g} s each (cold fleet snapshot {cold:.1f} s)",
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

"""The HTTP API over real loopback (uvicorn + httpx): a full cycle and clear refusals."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import uvicorn

from fleetops.ota.server import create_app
from fleetops.ota.transport import HttpTransport
from fleetops.ota.vehicle import Primary
from tests.ota.conftest import World, make_vin

FIRMWARE = b"BMS firmware over HTTP\n" * 500


@pytest.fixture
def base_url(world: World) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(world.server, registration_token="sesame", max_manifest_bytes=16384)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_full_cycle_over_http(world: World, base_url: str) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    car = Primary(world.tmp / "car", HttpTransport(base_url))
    result = car.update()
    assert result.ok and result.installed == {world.bms: "bms-3.0.0.bin"}
    assert car.ecus[world.bms].running() == FIRMWARE
    assert car.update().up_to_date


def test_http_refusals(world: World, base_url: str) -> None:
    with httpx.Client(base_url=base_url) as client:
        bad = client.post(f"/director/{world.vin}/manifest", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["detail"]["kind"] == "malformed"
        big = client.post(f"/director/{world.vin}/manifest", content=b"x" * 20000)
        assert big.status_code == 413
        assert client.get("/image/metadata/../../keys").status_code == 404
        assert client.get("/image/targets/..%2Fkeys").status_code == 404
        assert client.get("/director/NOTAVIN/metadata/targets.json").status_code == 404
        assert client.post("/director/X/register", content=b"{}").status_code == 403
        assert client.get("/image/metadata/1.root.json").status_code == 200
        body = world.car.manifest()
        assert client.post(f"/director/{world.vin}/manifest", content=body).status_code == 200
        replay = client.post(f"/director/{world.vin}/manifest", content=body)
        assert replay.status_code == 400 and replay.json()["detail"]["kind"] == "replay"
        assert client.post(f"/director/{world.vin}/manifest", content=body).status_code == 400
        gone = client.post(f"/director/{make_vin(999999)}/manifest", content=world.car.manifest())
        assert gone.status_code == 404 and gone.json()["detail"]["kind"] == "unknown-vehicle"
        reg = client.post(
            f"/director/{world.vin}/register",
            headers={"authorization": "Bearer sesame"},
            content=orjson.dumps({"primary_serial": "a", "ecus": []}),
        )
        assert reg.status_code == 400


def test_check_in_answers_timestamp_and_root_version(world: World, base_url: str) -> None:
    with httpx.Client(base_url=base_url) as client:
        reply = client.post(f"/director/{world.vin}/manifest", content=world.car.manifest())
        assert reply.status_code == 200
        assert reply.content == world.server.director.metadata(world.vin, "timestamp.json")
        assert reply.headers["x-director-root-version"] == str(world.server.director.root_version)
        schema = client.get("/openapi.json").json()
        check_in = schema["paths"]["/director/{vin}/manifest"]["post"]
        assert {"200", "400", "404", "413"} <= set(check_in["responses"])

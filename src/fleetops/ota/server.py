"""HTTP for both repositories and vehicle check-ins (FastAPI, served by uvicorn).

    GET  /image/metadata/{role}.json          GET /image/targets/{name}
    GET  /director/{vin}/metadata/{role}.json POST /director/{vin}/manifest
    POST /director/{vin}/register             (only with a registration token)

A check-in answers with the vehicle's current director timestamp metadata (and the
latest director root version in ``X-Director-Root-Version``), so a vehicle with nothing
new learns it in one round trip. Request bodies are size-limited; refusals are 400 with
``{"detail": {"kind": ..., "reason": ...}}``. ``create_app`` returns the app so another
service (the console) can mount it.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response
from starlette.routing import Route

from fleetops.core.errors import ValidationError
from fleetops.ota.director import EcuInfo
from fleetops.ota.errors import ManifestRejected, UnknownVehicle
from fleetops.ota.manifest import MAX_MANIFEST_BYTES
from fleetops.ota.store import OtaServer
from fleetops.ota.transport import ROOT_VERSION_HEADER

JSON = "application/json"
CHECK_IN_PATH = "/director/{vin}/manifest"
_REFUSAL = {"description": '{"detail": {"kind": ..., "reason": ...}}'}
CHECK_IN_OPENAPI: dict[str, Any] = {
    "summary": "Check in: a signed vehicle version manifest",
    "operationId": "check_in",
    "parameters": [{"name": "vin", "in": "path", "required": True, "schema": {"type": "string"}}],
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"type": "object"}}},
        "description": "Uptane vehicle version manifest ({signed, signatures})",
    },
    "responses": {
        "200": {
            "description": "the vehicle's current director timestamp.json; the latest "
            "director root version in X-Director-Root-Version",
            "content": {JSON: {"schema": {"type": "object"}}},
        },
        "400": _REFUSAL,
        "404": _REFUSAL,
        "413": _REFUSAL,
    },
}
# httptools parses HTTP in C and uvloop runs the event loop in C: with the defaults (h11,
# asyncio) a route with a fixed reply managed about 2,000/s on one core, about 6,000/s with
# these (docs/ota.md, Measured)
UVICORN_STACK: dict[str, Any] = {
    "http": "httptools",
    "loop": "auto",  # uvloop where installed (not on Windows), asyncio otherwise
}


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, {"kind": "oversize", "reason": f"body over {limit} bytes"})
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, {"kind": "oversize", "reason": f"body over {limit} bytes"})
        parts.append(chunk)
    return b"".join(parts)


def create_app(
    server: OtaServer,
    *,
    max_manifest_bytes: int = MAX_MANIFEST_BYTES,
    registration_token: str | None = None,
) -> FastAPI:
    """The OTA HTTP API over ``server`` (an :class:`~fleetops.ota.store.OtaServer`)."""
    app = FastAPI(title="fleetops OTA (Uptane)", docs_url=None, redoc_url=None)
    image, director = server.image, server.director

    @app.get("/image/metadata/{name}")
    def image_metadata(name: str) -> Response:
        data = image.metadata(name)
        if data is None:
            raise HTTPException(404, "no such metadata")
        return Response(data, media_type=JSON)

    @app.get("/image/targets/{name}")
    def image_target(name: str) -> FileResponse:
        path = image.image_path(name)
        if path is None:
            raise HTTPException(404, "no such image")
        return FileResponse(path, media_type="application/octet-stream")

    @app.get("/director/{vin}/metadata/{name}")
    def director_metadata(vin: str, name: str) -> Response:
        try:
            data = director.metadata(vin, name)
        except UnknownVehicle as exc:
            raise HTTPException(404, {"kind": "unknown-vehicle", "reason": str(exc)}) from None
        if data is None:
            raise HTTPException(404, "no such metadata")
        return Response(data, media_type=JSON)

    # The check-in is the hot path (every vehicle, every cycle): a plain Starlette route,
    # matched first, skips FastAPI's per-request parameter validation (about 35 µs of the
    # ~185 µs a check-in takes in process); it is added to the OpenAPI schema by hand below.
    async def check_in(request: Request) -> Response:
        body = await _body(request, max_manifest_bytes)
        try:
            timestamp = director.check_in(request.path_params["vin"], body)
        except UnknownVehicle as exc:
            raise HTTPException(404, {"kind": "unknown-vehicle", "reason": str(exc)}) from None
        except ManifestRejected as exc:
            raise HTTPException(400, {"kind": exc.kind, "reason": exc.reason}) from None
        return Response(
            timestamp,
            media_type=JSON,
            headers={ROOT_VERSION_HEADER: str(director.root.root.signed.version)},
        )

    app.router.routes.insert(0, Route(CHECK_IN_PATH, check_in, methods=["POST"]))
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate_openapi()
        schema["paths"].setdefault(CHECK_IN_PATH, {"post": CHECK_IN_OPENAPI})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.post("/director/{vin}/register")
    async def register(vin: str, request: Request) -> dict[str, Any]:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if registration_token is None or not hmac.compare_digest(given, registration_token):
            raise HTTPException(
                403, {"kind": "forbidden", "reason": "registration needs the server's token"}
            )
        body = await _body(request, max_manifest_bytes)
        try:
            data = orjson.loads(body)
            ecus = [EcuInfo(e["serial"], e["hardware_id"], e["public_key"]) for e in data["ecus"]]
            director.register(vin, str(data["primary_serial"]), ecus)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise HTTPException(
                400, {"kind": "malformed", "reason": f"registration: {exc}"}
            ) from None
        except ValidationError as exc:
            raise HTTPException(400, {"kind": "invalid", "reason": str(exc)}) from None
        return {"vin": vin, "registered": len(ecus)}

    return app


def serve(
    repo: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8470,
    registration_token: str | None = None,
    log_level: str = "warning",
) -> None:
    """Run the API with uvicorn until interrupted."""
    import uvicorn

    app = create_app(OtaServer.open(repo), registration_token=registration_token)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, **UVICORN_STACK)

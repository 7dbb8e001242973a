"""``fleetops ota``: keys, publish, serve, vehicle (and ``campaign`` from the rollout)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetops.cli_support import console, errors, out
from fleetops.core.errors import ConfigError, ValidationError
from fleetops.ota.rollout.cli import campaign_app

if TYPE_CHECKING:
    from fleetops.ota.director import EcuInfo

ota_app = typer.Typer(
    help="Secure over-the-air updates (Uptane on TUF).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, rotate and revoke repository keys.", no_args_is_help=True)
vehicle_app = typer.Typer(
    help="A simulated vehicle: register it, run an update cycle.", no_args_is_help=True
)
ota_app.add_typer(keys_app, name="keys")
ota_app.add_typer(vehicle_app, name="vehicle")
ota_app.add_typer(campaign_app, name="campaign")

DEFAULT_REPO = Path(os.environ.get("FLEETOPS_OTA_REPO", "fleetops-data/ota/repo"))
DEFAULT_ROOT_KEYS = Path(os.environ.get("FLEETOPS_OTA_ROOT_KEYS", "fleetops-data/ota/root-keys"))
RepoOption = Annotated[Path, typer.Option("--repo", help="Repository folder (image + director).")]
RootKeysOption = Annotated[Path, typer.Option("--root-keys", help="Offline root-key folder.")]
WhichOption = Annotated[str, typer.Option("--repository", help="image or director.")]


def _repository(which: str) -> str:
    if which not in ("image", "director"):
        raise ConfigError(f"--repository must be image or director, not {which!r}")
    return which


@keys_app.command("init")
def keys_init(
    repo: RepoOption = DEFAULT_REPO,
    root_keys: RootKeysOption = DEFAULT_ROOT_KEYS,
    root_count: Annotated[int, typer.Option(help="Root keys per repository.")] = 3,
    root_threshold: Annotated[int, typer.Option(help="Root signatures needed.")] = 2,
) -> None:
    """Create both repositories with fresh keys (root keys go to --root-keys)."""
    with errors():
        from fleetops.ota.repository import Thresholds
        from fleetops.ota.store import OtaServer

        server = OtaServer.init(
            repo, root_keys=root_keys, thresholds=Thresholds(root=(root_count, root_threshold))
        )
        for keeper in (server.image.root, server.director.root):
            for role, r in keeper.root.signed.roles.items():
                out.print(
                    f"{keeper.name:8} {role:9} {r.threshold}-of-{len(r.keyids)}  "
                    + " ".join(k[:16] for k in r.keyids)
                )
        console.print(f"repositories in {repo}; keep {root_keys} offline")


def _keeper(repo: Path, root_keys: Path, which: str) -> object:
    from fleetops.ota.store import OtaServer

    server = OtaServer.open(repo, root_keys=root_keys)
    return server.image if _repository(which) == "image" else server.director


@keys_app.command("rotate")
def keys_rotate(
    role: Annotated[str, typer.Argument(help="root, targets, snapshot or timestamp")],
    which: WhichOption = "image",
    repo: RepoOption = DEFAULT_REPO,
    root_keys: RootKeysOption = DEFAULT_ROOT_KEYS,
) -> None:
    """Replace the keys of a role: a new root signed by the old and new root keys."""
    with errors():
        from fleetops.ota.director import Director
        from fleetops.ota.repository import ImageRepository

        target = _keeper(repo, root_keys, which)
        assert isinstance(target, ImageRepository | Director)
        new = target.root.rotate(role)
        if isinstance(target, ImageRepository) and role != "root":
            target.resign_all()
        out.print(
            f"{which} {role}: new keys {' '.join(k[:16] for k in new)}; "
            f"root v{target.root.root.signed.version}"
        )


@keys_app.command("revoke")
def keys_revoke(
    role: Annotated[str, typer.Argument(help="root, targets, snapshot or timestamp")],
    keyid: Annotated[str, typer.Argument(help="The key id (or a unique prefix).")],
    which: WhichOption = "image",
    repo: RepoOption = DEFAULT_REPO,
    root_keys: RootKeysOption = DEFAULT_ROOT_KEYS,
) -> None:
    """Remove one key from a role; signatures by it no longer count."""
    with errors():
        from fleetops.ota.director import Director
        from fleetops.ota.repository import ImageRepository

        target = _keeper(repo, root_keys, which)
        assert isinstance(target, ImageRepository | Director)
        target.root.revoke(role, keyid)
        if isinstance(target, ImageRepository) and role != "root":
            target.resign_all()
        out.print(f"{which} {role}: revoked {keyid}; root v{target.root.root.signed.version}")


@ota_app.command("publish")
def publish(
    image: Annotated[Path, typer.Argument(help="The image file.")],
    hardware_id: Annotated[
        list[str], typer.Option("--hardware-id", help="Hardware id it is for (repeatable).")
    ],
    version: Annotated[str, typer.Option("--version", help="Software version it carries.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Target name (default: file name).")
    ] = None,
    assign: Annotated[
        bool, typer.Option("--assign", help="Also assign it to every ECU of these hardware ids.")
    ] = False,
    repo: RepoOption = DEFAULT_REPO,
) -> None:
    """Add an image to the image repository (new targets, snapshot and timestamp)."""
    with errors():
        from fleetops.ota.store import OtaServer

        if not image.is_file():
            raise ConfigError(f"{image} is not a file")
        server = OtaServer.open(repo)
        target = server.image.add_image(
            name or image.name, image.read_bytes(), hardware_id, version
        )
        if assign:
            for hw in hardware_id:
                server.assignments.by_hardware[hw] = target.path
            server.assignments.save()
        out.print(
            f"published {target.path} ({target.length} bytes, sha256 {target.hashes['sha256'][:16]}) "
            f"release {target.custom['release_counter']} for {', '.join(hardware_id)}"
        )


@ota_app.command("serve")
def serve_cmd(
    repo: RepoOption = DEFAULT_REPO,
    host: Annotated[str, typer.Option(help="Interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8470,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="FLEETOPS_OTA_TOKEN",
            help="Enables POST /director/{vin}/register with this bearer token.",
        ),
    ] = None,
) -> None:
    """Serve both repositories and vehicle check-ins over HTTP."""
    with errors():
        from fleetops.ota.server import serve

        console.print(f"OTA server on http://{host}:{port}")
        serve(repo, host=host, port=port, registration_token=token)


def _parse_ecu(spec: str) -> tuple[str, str, str]:
    name, _, rest = spec.partition("=")
    hardware, _, version = rest.partition(":")
    if not (name and hardware and version):
        raise ValidationError(
            f"--ecu {spec!r}: expected NAME=HARDWARE_ID:VERSION, e.g. BMS=EVX-BMS-C:2.8.1"
        )
    return name, hardware, version


@vehicle_app.command("register")
def vehicle_register(
    vin: Annotated[str, typer.Option("--vin", help="The vehicle's VIN.")],
    ecu: Annotated[list[str], typer.Option("--ecu", help="NAME=HARDWARE_ID:VERSION (repeatable).")],
    folder: Annotated[Path, typer.Option("--dir", help="Where the simulated vehicle lives.")],
    repo: Annotated[
        Path | None, typer.Option("--repo", help="Register in this local repository…")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="…or with this server URL.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="FLEETOPS_OTA_TOKEN", help="Server registration token."),
    ] = None,
    primary: Annotated[
        str | None, typer.Option("--primary", help="Primary ECU name (default GW or the first).")
    ] = None,
) -> None:
    """Provision a simulated vehicle (keys, ECUs, trusted roots) and register it."""
    with errors():
        from fleetops.core.types import validate_vin
        from fleetops.ota.vehicle import provision, remove_vehicle

        vin = validate_vin(vin)
        ecus = [_parse_ecu(e) for e in ecu]
        if (repo is None) == (server is None):
            raise ConfigError("give exactly one of --repo or --server")
        director_root, image_root = _fetch_roots(repo, server, vin)
        primary_serial, infos = provision(folder, vin, ecus, director_root, image_root, primary)
        try:
            if repo is not None:
                from fleetops.ota.store import OtaServer

                OtaServer.open(repo).director.register(vin, primary_serial, infos)
            else:
                _register_remote(str(server), vin, primary_serial, infos, token)
        except BaseException:
            remove_vehicle(folder)
            raise
        out.print(f"{vin}: {len(infos)} ECUs, primary {primary_serial}, in {folder}")


def _fetch_roots(repo: Path | None, server: str | None, vin: str) -> tuple[bytes, bytes]:
    if repo is not None:
        from fleetops.ota.store import OtaServer

        s = OtaServer.open(repo)
        return s.director.root.root_bytes() or b"", s.image.metadata("root.json") or b""
    import httpx

    from fleetops.core.errors import ServiceUnavailableError

    # trust on first use: in production the roots are flashed at the factory
    base = str(server).rstrip("/")
    try:
        d = httpx.get(f"{base}/director/{vin}/metadata/1.root.json", timeout=10)
        i = httpx.get(f"{base}/image/metadata/1.root.json", timeout=10)
    except httpx.HTTPError as exc:
        raise ServiceUnavailableError(f"cannot reach {base}: {exc}") from None
    if d.status_code != 200 or i.status_code != 200:
        raise ConfigError(f"{base} did not serve the repositories' first roots")
    return d.content, i.content


def _register_remote(
    server: str, vin: str, primary: str, infos: list[EcuInfo], token: str | None
) -> None:
    import httpx
    import orjson

    body = {
        "primary_serial": primary,
        "ecus": [
            {"serial": e.serial, "hardware_id": e.hardware_id, "public_key": e.public_key}
            for e in infos
        ],
    }
    response = httpx.post(
        f"{server.rstrip('/')}/director/{vin}/register",
        content=orjson.dumps(body),
        headers={"authorization": f"Bearer {token or ''}"},
        timeout=10,
    )
    if response.status_code != 200:
        raise ConfigError(
            f"registration refused: HTTP {response.status_code} {response.text[:200]}"
        )


@vehicle_app.command("check")
def vehicle_check(
    folder: Annotated[Path, typer.Option("--dir", help="The simulated vehicle's folder.")],
    repo: Annotated[
        Path | None, typer.Option("--repo", help="Update from this local repository…")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="…or from this server URL.")
    ] = None,
) -> None:
    """Run one full update cycle: check in, verify, download, install, report."""
    with errors():
        from fleetops.ota.transport import HttpTransport, LocalTransport, Transport
        from fleetops.ota.vehicle import Primary

        if (repo is None) == (server is None):
            raise ConfigError("give exactly one of --repo or --server")
        transport: Transport
        if repo is not None:
            from fleetops.ota.store import OtaServer

            s = OtaServer.open(repo)
            transport = LocalTransport(s.image, s.director)
        else:
            transport = HttpTransport(str(server))
        result = Primary(folder, transport).update()
        if result.refused is not None:
            raise result.refused
        for serial, name in result.installed.items():
            out.print(f"installed {name} on {serial}")
        for serial, reason in result.failed.items():
            console.print(f"[red]install failed[/] on {serial}: {reason} (old image still runs)")
        if result.up_to_date:
            out.print("up to date")
        if result.failed:
            raise typer.Exit(1)

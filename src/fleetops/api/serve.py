"""``fleetops serve``: the console (API + dashboard) on uvicorn, embedded store by default.

cli.py registers it with one line: ``app.command("serve")(serve_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetops.cli_support import console, errors, out


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="YAML settings (default: $FLEETOPS_CONFIG)."),
    ] = None,
    lake: Annotated[
        Path | None, typer.Option("--lake", help="Lake folder (default: $FLEETOPS_LAKE).")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Users/sessions/audit store: SQLite file or postgresql:// DSN "
            "(default: $FLEETOPS_API_STORE or <data dir>/console.sqlite)."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API and the web dashboard (OpenAPI at /docs).

    On first start with an empty store it creates the account 'admin' and prints its
    one-time password (or uses $FLEETOPS_ADMIN_PASSWORD).
    """
    import uvicorn

    from fleetops.api.app import create_app
    from fleetops.api.settings import Settings

    with errors():
        settings = Settings.load(config_file, lake=lake, store=store)
        app = create_app(settings)
        boot = app.state.bootstrap
        if boot.admin_created and boot.generated_password:
            out.print(
                f"created the account 'admin' with the one-time password: "
                f"[bold]{boot.generated_password}[/] (change it: PUT /api/v1/me/password)",
                highlight=False,
            )
        elif boot.admin_created:
            out.print("created the account 'admin' with $FLEETOPS_ADMIN_PASSWORD")
        missing = app.state.providers.missing
        for capability, why in missing.items():
            console.print(f"[yellow]not served:[/] {capability} ({why})")
        where = "PostgreSQL" if settings.is_postgres else settings.store
        out.print(
            f"fleetops console on http://{host}:{port}/  (API docs /docs; lake {settings.lake};"
            f" store {where})",
            highlight=False,
        )
        uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)

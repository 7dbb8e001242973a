from fleetops.cli import app

app(prog_name="fleetops")

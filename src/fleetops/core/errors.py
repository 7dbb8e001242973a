"""Exceptions shared by every capability; the CLI maps them to exit codes."""


class FleetopsError(Exception):
    """Base of every error fleetops raises on purpose."""

    exit_code = 1


class ValidationError(FleetopsError, ValueError):
    """Input that does not fit the data model (bad VIN, unknown signal, wrong shape)."""

    exit_code = 2


class ConfigError(FleetopsError):
    """A setting, path or file the user gave that cannot be used."""

    exit_code = 2


class ServiceUnavailableError(FleetopsError):
    """A server (MQTT broker, database) could not be reached."""

    exit_code = 3

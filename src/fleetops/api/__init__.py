"""The console's HTTP API: FastAPI app, access control, audit, and capability providers.

>>> from fleetops.api.app import create_app          # doctest: +SKIP
>>> from fleetops.api.settings import Settings       # doctest: +SKIP
>>> app = create_app(Settings.load())                 # doctest: +SKIP
"""

"""The dashboard: server-rendered pages (Jinja2 + inline SVG charts) on the console's API
layer; see :mod:`fleetops.web.pages`."""

"""Shared core: data model, signal catalog, lake storage. Depends on no capability."""

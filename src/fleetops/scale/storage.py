"""Files of distributed jobs: inputs listed and read, outputs that appear only when whole.

Paths are local paths or fsspec URLs (``s3://…``, ``gs://…``, ``memory://…``): every worker
reads and writes them itself, so a cluster needs storage all its nodes can reach.

A job's output is a folder of Parquet parts. Tasks write their parts into a hidden staging
folder next to it (``.<name>.staging-<job id>``) under names fixed by the part — a part run
again after its worker died overwrites its own file, never adds a second one — each file
written under a ``.tmp`` name and renamed. When every part is in, the driver writes
``_manifest.json`` (the parts and their row counts) and renames the staging folder to the
output name: on a local or network file system that rename is atomic, so the output
appears whole or not at all. Object stores have no atomic rename; there the output counts
as complete only once its ``_manifest.json`` exists, which :func:`list_parquet` checks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from fleetops.core.errors import ConfigError

MANIFEST = "_manifest.json"
TMP = ".tmp"


def filesystem_of(paths: Sequence[str]) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The one file system of ``paths`` and the paths as it names them."""
    if not paths:
        return LocalFileSystem(), []
    fs, first = fsspec.core.url_to_fs(str(paths[0]))
    out = [first]
    for path in paths[1:]:
        other, stripped = fsspec.core.url_to_fs(str(path))
        if type(other) is not type(fs):
            raise ConfigError(f"{path}: every input of a job must be on one file system")
        out.append(stripped)
    return fs, out


def _join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def list_parquet(url: str, table: str | None = None) -> list[str]:
    """The Parquet files of a dataset folder (``table``: of one lake table), sorted.

    Hidden folders (staging, ingest logs) and ``.tmp`` files are never listed. A folder
    with a ``_manifest.json`` lists what the manifest names.
    """
    fs, root = fsspec.core.url_to_fs(url)
    base = _join(root, table) if table else root
    if not fs.isdir(base):
        raise ConfigError(f"{url}{'/' + table if table else ''}: no such folder")
    manifest = _join(root, MANIFEST)
    if fs.exists(manifest):
        listed = orjson.loads(fs.cat_file(manifest))["files"]
        prefix = f"{table}/" if table else ""
        found = sorted(_join(root, f) for f in listed if f.startswith(prefix))
    else:
        found = sorted(
            p
            for p in fs.find(base)
            if p.endswith(".parquet")
            and not any(part.startswith((".", "_")) for part in p[len(base) :].split("/") if part)
        )
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return found
    return [f"{protocol}://{p}" for p in found]


def read_parquet(path: str, columns: Sequence[str] | None = None) -> pa.Table:
    fs, stripped = fsspec.core.url_to_fs(path)
    with fs.open(stripped, "rb") as source:
        return pq.read_table(source, columns=list(columns) if columns is not None else None)


def write_parquet(table: pa.Table, path: str) -> None:
    """Write ``table`` so that ``path`` holds the whole file or nothing (tmp + rename)."""
    fs, stripped = fsspec.core.url_to_fs(path)
    parent = stripped.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        tmp = Path(stripped + TMP)
        with tmp.open("wb") as sink:
            pq.write_table(table, sink, compression="zstd")
            sink.flush()
            os.fsync(sink.fileno())
        tmp.replace(stripped)
    else:  # object stores: an upload becomes visible whole
        with fs.open(stripped, "wb") as sink:
            pq.write_table(table, sink, compression="zstd")


@dataclass(frozen=True)
class Output:
    """A job's output folder, staged and committed as the module docstring says."""

    url: str
    staging: str

    @classmethod
    def create(cls, url: str, *, overwrite: bool = False) -> Output:
        fs, root = fsspec.core.url_to_fs(url)
        root = root.rstrip("/")
        if fs.exists(root) and not overwrite:
            raise ConfigError(f"{url} exists: give a new output folder (or overwrite)")
        parent, _, name = root.rpartition("/")
        staging = _join(parent, f".{name}.staging-{uuid.uuid4().hex[:12]}")
        fs.makedirs(staging, exist_ok=False)
        return cls(url, _unstrip(fs, staging))

    def part(self, *names: str) -> str:
        """Where a task writes one part (a path under the staging folder)."""
        return _join(self.staging, *names)

    def commit(self, info: dict[str, Any] | None = None) -> list[str]:
        """Make the output visible: manifest, then the rename. Returns the output's files."""
        fs, staging = fsspec.core.url_to_fs(self.staging)
        _, root = fsspec.core.url_to_fs(self.url)
        root = root.rstrip("/")
        files = sorted(p[len(staging) + 1 :] for p in fs.find(staging) if p.endswith(".parquet"))
        manifest = {"files": files, **(info or {})}
        if fs.exists(root):  # overwrite: move the old output aside first
            fs.mv(root, root + f".old-{uuid.uuid4().hex[:8]}", recursive=True)
            old = [p for p in fs.ls(root.rpartition("/")[0]) if p.startswith(root + ".old-")]
        else:
            old = []
        if isinstance(fs, LocalFileSystem):
            with Path(staging, MANIFEST).open("wb") as sink:
                sink.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
                sink.flush()
                os.fsync(sink.fileno())
            Path(staging).rename(root)
            _fsync_dir(Path(root).parent)
        else:
            fs.mv(staging, root, recursive=True)
            fs.pipe_file(_join(root, MANIFEST), orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        for path in old:
            fs.rm(path, recursive=True)
        return files

    def abort(self) -> None:
        """Remove the staging folder (the job failed: nothing of it becomes visible)."""
        fs, staging = fsspec.core.url_to_fs(self.staging)
        if fs.exists(staging):
            fs.rm(staging, recursive=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path}"

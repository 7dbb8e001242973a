"""Read inventories (CSV folder or JSON) and public VM traces into :class:`Inventory`.

Every bad row raises :class:`ValidationError` naming the file, line and field; rows that
are skipped on purpose (VMs switched off) are listed in ``Inventory.notes``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.footprint.model import HOURS, Host, Inventory, Series, TargetType, Workload

FORMATS = ("bitbrains", "planetlab", "azure", "alibaba", "csv", "json")


def _bad(path: Path | str, line: int | str, field: str, why: str) -> ValidationError:
    return ValidationError(f"{path}: line {line}: field {field!r}: {why}")


def _num(
    row: dict[str, Any], key: str, path: Path, line: int | str, default: float | None = None
) -> float:
    raw = row.get(key)
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        if default is None:
            raise _bad(path, line, key, "missing")
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise _bad(path, line, key, f"not a number: {raw!r}") from None
    if not np.isfinite(value) or value < 0:
        raise _bad(path, line, key, f"must be a finite number >= 0, got {raw!r}")
    return value


def _text(row: dict[str, Any], key: str) -> str:
    return str(row.get(key) or "").strip()


def _set(row: dict[str, Any], key: str) -> frozenset[str]:
    raw = row.get(key) or ""
    items = raw if isinstance(raw, list) else str(raw).split(";")
    return frozenset(str(s).strip() for s in items if str(s).strip())


def _need_name(row: dict[str, Any], key: str, path: Path, line: int | str) -> str:
    name = _text(row, key)
    if not name:
        raise _bad(path, line, key, "missing")
    return name


def _host(row: dict[str, Any], path: Path, line: int | str) -> Host:
    return Host(
        name=_need_name(row, "host", path, line),
        cpu=_num(row, "cpu", path, line),
        memory_gb=_num(row, "memory_gb", path, line),
        storage_gb=_num(row, "storage_gb", path, line, 0.0),
        power_w=_num(row, "power_w", path, line, 0.0),
        rack=_text(row, "rack"),
        site=_text(row, "site"),
        type=_text(row, "type"),
        licences=_set(row, "licences"),
        cost_per_month=_num(row, "cost_per_month", path, line, 0.0),
    )


def _target(row: dict[str, Any], path: Path, line: int | str) -> TargetType:
    kind = _text(row, "kind") or "host"
    if kind not in ("host", "vm"):
        raise _bad(path, line, "kind", f"must be host or vm, got {kind!r}")
    return TargetType(
        name=_need_name(row, "name", path, line),
        cpu=_num(row, "cpu", path, line),
        memory_gb=_num(row, "memory_gb", path, line),
        storage_gb=_num(row, "storage_gb", path, line, 0.0),
        power_w=_num(row, "power_w", path, line, 0.0),
        price_per_month=_num(row, "price_per_month", path, line, 0.0),
        kind=kind,
        licences=_set(row, "licences"),
    )


def _workload(row: dict[str, Any], path: Path, line: int | str) -> Workload:
    w = Workload(
        name=_need_name(row, "workload", path, line),
        storage_gb=_num(row, "storage_gb", path, line, 0.0),
        site=_text(row, "site"),
        app_group=_text(row, "app_group"),
        current_host=_text(row, "current_host"),
        pin_host=_text(row, "pin_host"),
        licences=_set(row, "licences"),
        affinity=_text(row, "affinity_group"),
        anti_affinity=_set(row, "anti_affinity_groups"),
        cpu_alloc=_num(row, "cpu_alloc", path, line, 0.0),
        memory_alloc_gb=_num(row, "memory_alloc_gb", path, line, 0.0),
    )
    # Declared demand: ``cpu``/``memory_gb`` (any percentile) or ``cpu_p95``/``memory_gb_p95``.
    for key in row:
        for prefix, out in (("cpu", w.cpu_pct), ("memory_gb", w.memory_pct)):
            if key == prefix and _text(row, key):
                out[0.0] = _num(row, key, path, line)
            elif key.startswith(prefix + "_p") and _text(row, key):
                try:
                    q = float(key[len(prefix) + 2 :])
                except ValueError:
                    continue
                out[q] = _num(row, key, path, line)
    return w


def _csv_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return [(reader.line_num, row) for row in reader]


def load_inventory(path: Path) -> Inventory:
    """A folder with ``hosts.csv``, ``workloads.csv`` and optional ``targets.csv`` and
    ``series.csv`` (workload,timestamp,cpu,memory_gb), or one JSON file with the keys
    ``hosts``, ``workloads``, ``targets`` and ``series`` holding the same fields."""
    inv = Inventory(source=str(path))
    tables: dict[str, list[tuple[int | str, dict[str, Any]]]] = {}
    files: dict[str, Path] = {}
    if path.is_dir():
        for key in ("hosts", "workloads", "targets", "series"):
            f = path / f"{key}.csv"
            files[key] = f
            tables[key] = list(_csv_rows(f)) if f.exists() else []
        if not (path / "workloads.csv").exists():
            raise ConfigError(f"{path}: no workloads.csv")
    elif path.suffix == ".json":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise _bad(path, exc.lineno, "-", f"invalid JSON: {exc.msg}") from None
        for key in ("hosts", "workloads", "targets", "series"):
            files[key] = path
            items = doc.get(key, [])
            if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
                raise _bad(path, key, key, "must be a list of objects")
            tables[key] = [(f"{key}[{i}]", r) for i, r in enumerate(items)]
    else:
        raise ConfigError(f"{path}: expected a folder of CSV files or a .json file")
    inv.hosts = [_host(r, files["hosts"], n) for n, r in tables["hosts"]]
    inv.targets = [_target(r, files["targets"], n) for n, r in tables["targets"]]
    inv.workloads = [_workload(r, files["workloads"], n) for n, r in tables["workloads"]]
    _unique([h.name for h in inv.hosts], files["hosts"], "host")
    _unique([w.name for w in inv.workloads], files["workloads"], "workload")
    by_name = {w.name: w for w in inv.workloads}
    samples: dict[str, list[tuple[float, float, float]]] = {}
    for n, r in tables["series"]:
        name = _need_name(r, "workload", files["series"], n)
        if name not in by_name:
            raise _bad(files["series"], n, "workload", f"unknown workload {name!r}")
        samples.setdefault(name, []).append(
            (
                _num(r, "timestamp", files["series"], n),
                _num(r, "cpu", files["series"], n),
                _num(r, "memory_gb", files["series"], n),
            )
        )
    for name, rows in samples.items():
        arr = np.array(rows)
        by_name[name].series = Series(
            hour=((arr[:, 0] // 3600) % HOURS).astype(np.int64), cpu=arr[:, 1], memory_gb=arr[:, 2]
        )
    return inv


def _unique(names: list[str], path: Path, field: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise _bad(path, f"{i + 2} (record {i + 1})", field, f"duplicate name {n!r}")
        seen.add(n)


# -- public traces --------------------------------------------------------------------------

BITBRAINS_COLUMNS = 11


def _parse_bitbrains(path: Path, text: str) -> np.ndarray:
    try:
        df = pl.read_csv(
            io.StringIO(text.replace(";\t", ",")), has_header=True, infer_schema_length=0
        )
        arr = df.select(pl.all().cast(pl.Float64, strict=True)).to_numpy()
        if arr.shape[1] != BITBRAINS_COLUMNS or not np.isfinite(arr).all():
            raise ValueError
        return np.asarray(arr, dtype=np.float64)
    except Exception:
        pass  # slow path below finds the exact line and field
    lines = text.splitlines()
    header = [h.strip() for h in lines[0].split(";\t")]
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split(";\t")
        if len(parts) != BITBRAINS_COLUMNS:
            raise _bad(
                path,
                n,
                "-",
                f"expected {BITBRAINS_COLUMNS} ';\\t'-separated fields, got {len(parts)}",
            )
        for h, p in zip(header, parts, strict=True):
            try:
                if not np.isfinite(float(p)):
                    raise ValueError
            except ValueError:
                raise _bad(path, n, h, f"not a finite number: {p.strip()!r}") from None
    raise _bad(path, "?", "-", "unreadable")


def load_bitbrains(path: Path) -> Inventory:
    """GWA-T-12 Rnd: a folder of ``N.csv[.gz]`` files (or one file); CPU cores from MHz."""
    files = (
        sorted(path.rglob("*.csv*"), key=lambda f: (len(f.name), f.name))
        if path.is_dir()
        else [path]
    )
    files = [f for f in files if f.name.split(".")[0].isdigit()]
    if not files:
        raise ConfigError(f"{path}: no Bitbrains N.csv or N.csv.gz files")
    inv = Inventory(source=f"bitbrains:{path}")
    off: list[str] = []
    off_rows = 0
    for f in files:
        raw = f.read_bytes()
        text = (gzip.decompress(raw) if f.suffix == ".gz" else raw).decode("utf-8")
        a = _parse_bitbrains(f, text)
        on = a[:, 2] > 0  # no provisioned CPU capacity: the VM is switched off
        off_rows += int((~on).sum())
        a = a[on]
        name = f"{f.parent.name}/{f.name.split('.')[0]}"
        if len(a) == 0:
            off.append(name)
            continue
        # Duplicate timestamps: keep the largest reading per timestamp (conservative).
        ts = a[:, 0]
        uniq, inverse = np.unique(ts, return_inverse=True)
        cores = a[:, 4] / 100.0 * a[:, 1]  # usage % of provisioned cores -> cores used
        cpu = np.full(len(uniq), -np.inf)
        mem = np.full(len(uniq), -np.inf)
        np.maximum.at(cpu, inverse, cores)
        np.maximum.at(mem, inverse, a[:, 6] / 2**20)  # KB -> GB (GiB)
        inv.workloads.append(
            Workload(
                name=name,
                series=Series(
                    hour=((uniq // 3600) % HOURS).astype(np.int64), cpu=cpu, memory_gb=mem
                ),
                cpu_alloc=float(a[:, 1].max()),
                memory_alloc_gb=float(a[:, 5].max() / 2**20),
                app_group=name,
            )
        )
    inv.notes.append(
        f"{off_rows} rows without provisioned CPU (VM switched off) were left out of the series"
    )
    if off:
        inv.notes.append(
            f"{len(off)} VMs were switched off for the whole trace and are not planned: {', '.join(off)}"
        )
    return inv


# CloudSim's PlanetLab VM types: MIPS 2500/2000/1000/500 (as cores /1000), 870/1740/1740/613 MB.
PLANETLAB_TYPES = ((2.5, 0.87), (2.0, 1.74), (1.0, 1.74), (0.5, 0.613))


def _pick(name: str, n: int) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % n


def load_planetlab(path: Path) -> Inventory:
    """PlanetLab: ``YYYYMMDD.tar.gz`` (or a folder of them); one workload per VM-day."""
    archives = sorted(path.glob("*.tar.gz")) if path.is_dir() else [path]
    if not archives:
        raise ConfigError(f"{path}: no PlanetLab .tar.gz day archives")
    inv = Inventory(source=f"planetlab:{path}")
    hour = (np.arange(288) // 12).astype(np.int64)
    for arc in archives:
        with tarfile.open(arc) as tf:
            for m in sorted(tf.getmembers(), key=lambda m: m.name):
                if not m.isfile():
                    continue
                fh = tf.extractfile(m)
                assert fh is not None
                lines = fh.read().decode("utf-8").splitlines()
                where = f"{arc}:{m.name}"
                if len(lines) != 288:
                    raise _bad(where, len(lines), "cpu %", f"expected 288 lines, got {len(lines)}")
                vals = np.empty(288)
                for n, s in enumerate(lines):
                    try:
                        vals[n] = float(s)
                    except ValueError:
                        raise _bad(where, n + 1, "cpu %", f"not a number: {s!r}") from None
                    if not 0 <= vals[n] <= 100:
                        raise _bad(where, n + 1, "cpu %", f"outside 0-100: {s!r}")
                cores, mem = PLANETLAB_TYPES[_pick(m.name, len(PLANETLAB_TYPES))]
                inv.workloads.append(
                    Workload(
                        name=m.name,
                        series=Series(
                            hour=hour, cpu=vals / 100 * cores, memory_gb=np.full(288, mem)
                        ),
                        cpu_alloc=cores,
                        memory_alloc_gb=mem,
                        app_group=m.name.split("/")[-1].split("_")[-1],
                    )
                )
    inv.notes.append(
        "PlanetLab has no VM sizes: each VM gets a CloudSim VM type by a hash of its name "
        "(cores = MIPS/1000); memory demand = the type's memory"
    )
    return inv


# Azure 2017 gives no sizes: assume common sizes (cores, GB), chosen by a hash of the VM id.
AZURE_SIZES = ((1, 1.75), (2, 3.5), (4, 7.0), (8, 14.0))


def load_azure(path: Path) -> Inventory:
    """Azure 2017 sample: ``microsoft_avg_100.csv.gz`` (or its folder); wide step x VM CSV."""
    f = path / "microsoft_avg_100.csv.gz" if path.is_dir() else path
    if not f.exists():
        raise ConfigError(f"{f}: not found")
    with (
        gzip.open(f, "rt", encoding="utf-8")
        if f.suffix == ".gz"
        else f.open(encoding="utf-8") as fh
    ):
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    data = np.empty((len(body), len(header) - 1))
    for n, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise _bad(f, n, "-", f"expected {len(header)} fields, got {len(r)}")
        for c, v in enumerate(r[1:]):
            try:
                data[n - 2, c] = float(v)
            except ValueError:
                raise _bad(f, n, header[c + 1], f"not a number: {v!r}") from None
    steps = np.array([int(float(r[0])) for r in body])
    hour = ((steps * 300 // 3600) % HOURS).astype(np.int64)
    inv = Inventory(source=f"azure:{f}")
    for c, vm in enumerate(header[1:]):
        cores, mem = AZURE_SIZES[_pick(vm, len(AZURE_SIZES))]
        inv.workloads.append(
            Workload(
                name=vm,
                series=Series(
                    hour=hour, cpu=data[:, c] / 100 * cores, memory_gb=np.full(len(steps), mem)
                ),
                cpu_alloc=cores,
                memory_alloc_gb=mem,
                app_group=vm,
            )
        )
    inv.notes.append(
        "Azure sample has no VM sizes: each VM gets 1/2/4/8 cores with 1.75 GB per core by a "
        "hash of its id; memory demand = that size; hours counted from step 0"
    )
    return inv


def load_alibaba(path: Path) -> Inventory:
    """Alibaba GPU 2023: pod requests (Running pods) and the node list as existing hosts."""
    pods = path / "openb_pod_list_default.csv" if path.is_dir() else path
    nodes = pods.parent / "openb_node_list_all_node.csv"
    inv = Inventory(source=f"alibaba:{pods}")
    if nodes.exists():
        for n, r in _csv_rows(nodes):
            name = _need_name(r, "sn", nodes, n)
            inv.hosts.append(
                Host(
                    name=name,
                    cpu=_num(r, "cpu_milli", nodes, n) / 1000,
                    memory_gb=_num(r, "memory_mib", nodes, n) / 1024,
                    type=r.get("model") or "cpu",
                )
            )
    skipped: dict[str, int] = {}
    for n, r in _csv_rows(pods):
        name = _need_name(r, "name", pods, n)
        cpu = _num(r, "cpu_milli", pods, n) / 1000
        mem = _num(r, "memory_mib", pods, n) / 1024
        phase = _text(r, "pod_phase")
        if phase != "Running":
            skipped[phase] = skipped.get(phase, 0) + 1
            continue
        inv.workloads.append(
            Workload(
                name=name,
                cpu_pct={0.0: cpu},
                memory_pct={0.0: mem},
                cpu_alloc=cpu,
                memory_alloc_gb=mem,
                app_group=_text(r, "qos"),
            )
        )
    inv.notes.append(
        "Alibaba pods: demand = request (no usage series; GPUs not modelled); only Running pods "
        f"are planned, left out by phase: {skipped}"
    )
    return inv


def load(fmt: str, path: Path) -> Inventory:
    """Import ``path`` in one of :data:`FORMATS`."""
    if not path.exists():
        raise ConfigError(f"{path}: not found")
    loaders = {
        "bitbrains": load_bitbrains,
        "planetlab": load_planetlab,
        "azure": load_azure,
        "alibaba": load_alibaba,
        "csv": load_inventory,
        "json": load_inventory,
    }
    if fmt not in loaders:
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    inv = loaders[fmt](path)
    if not inv.workloads:
        raise ValidationError(f"{path}: no workloads found")
    return inv

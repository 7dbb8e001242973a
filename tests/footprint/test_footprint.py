"""Footprint planner: constraints honoured, checker catches violations, importers, CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetops.core.errors import ValidationError
from fleetops.footprint import (
    Host,
    InfeasibleError,
    Plan,
    SolveOptions,
    TargetType,
    Workload,
    build_demand,
    check_plan,
    load,
    solve,
)
from fleetops.footprint.cli import footprint_app
from fleetops.footprint.synth import generate
from tests.conftest import require_shared

T = TargetType("t", cpu=10, memory_gb=100)


def w(name: str, cpu: float, mem: float = 1.0, **kw: object) -> Workload:
    return Workload(name=name, cpu_pct={0.0: cpu}, memory_pct={0.0: mem}, **kw)  # type: ignore[arg-type]


def plan_for(
    ws: list[Workload], hosts: list[Host] | None = None, target: TargetType | None = T, **kw: object
) -> Plan:
    d = build_demand(ws, 95, False)
    p = solve(ws, d, hosts or [], target, SolveOptions(time_limit=5, **kw))  # type: ignore[arg-type]
    assert check_plan(p, ws, d) == []
    return p


def test_headroom_and_optimality() -> None:
    ws = [w(f"a{i}", 4) for i in range(4)]  # 8 usable cores per host -> 2 per host
    p = plan_for(ws)
    assert p.hosts_used == 2 == p.lower_bound and p.optimal


def test_anti_affinity_affinity_residency_licence_pin() -> None:
    hosts = [
        Host("old1", 10, 100, site="eu", licences=frozenset({"ora"})),
        Host("old2", 10, 100, site="us"),
    ]
    ws = [
        w("x1", 1, anti_affinity=frozenset({"g"})),
        w("x2", 1, anti_affinity=frozenset({"g"})),
        w("y1", 1, affinity="ab"),
        w("y2", 1, affinity="ab"),
        w("eu1", 1, site="eu"),
        w("us1", 1, site="us"),
        w("db", 1, licences=frozenset({"ora"})),
        w("pin", 1, pin_host="old2"),
    ]
    p = plan_for(ws, hosts)
    a = p.assignment
    assert a["x1"] != a["x2"] and a["y1"] == a["y2"]
    assert p.hosts[a["eu1"]].site == "eu" and p.hosts[a["us1"]].site == "us"
    assert a["db"] == "old1" and a["pin"] == "old2"


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("capacity", lambda p: {**p.assignment, "b": p.assignment["a"]}),
        ("anti_affinity", lambda p: {**p.assignment, "c": p.assignment["d"]}),
        ("affinity", lambda p: {**p.assignment, "e": "other"}),
        ("residency", lambda p: {**p.assignment, "s": "other"}),
        ("licence", lambda p: {**p.assignment, "l": "other"}),
        ("pin", lambda p: {**p.assignment, "pn": "other"}),
        ("unplaced", lambda p: {k: v for k, v in p.assignment.items() if k != "a"}),
        ("unknown_host", lambda p: {**p.assignment, "a": "nowhere"}),
    ],
)
def test_checker_catches(kind: str, mutate: object) -> None:
    hosts = [Host("lic", 10, 100, site="eu", licences=frozenset({"L"}))]
    ws = [
        w("a", 6),
        w("b", 6),
        w("c", 1, anti_affinity=frozenset({"g"})),
        w("d", 1, anti_affinity=frozenset({"g"})),
        w("e", 1, affinity="E"),
        w("f", 1, affinity="E"),
        w("s", 1, site="eu"),
        w("l", 1, licences=frozenset({"L"})),
        w("pn", 1, pin_host="lic"),
    ]
    d = build_demand(ws, 95, False)
    p = solve(ws, d, hosts, T, SolveOptions(time_limit=5))
    assert check_plan(p, ws, d) == []
    other = Host("other", 10, 100, site="us")
    bad = replace(p, assignment=mutate(p), hosts={**p.hosts, "other": other})  # type: ignore[operator]
    assert kind in {v.kind for v in check_plan(bad, ws, d)}


@pytest.mark.parametrize(
    ("ws", "hosts", "text"),
    [
        ([w("big", 9)], [], "needs 9 cores of CPU"),
        ([w("p", 1, pin_host="ghost")], [], "unknown host 'ghost'"),
        ([w("l", 1, licences=frozenset({"X"}))], [], "licences ['X']"),
        (
            [w("a", 1, affinity="g", site="eu"), w("b", 1, affinity="g", site="us")],
            [],
            "bound to sites",
        ),
        (
            [
                w("a", 1, affinity="g", anti_affinity=frozenset({"z"})),
                w("b", 1, affinity="g", anti_affinity=frozenset({"z"})),
            ],
            [],
            "anti-affinity group 'z'",
        ),
        (
            [w(f"n{i}", 1, anti_affinity=frozenset({"z"})) for i in range(3)],
            [Host("h1", 10, 100), Host("h2", 10, 100)],
            "only 2 eligible hosts",
        ),
    ],
)
def test_infeasible_explains(ws: list[Workload], hosts: list[Host], text: str) -> None:
    target = None if hosts else T
    with pytest.raises(InfeasibleError, match=text.replace("[", r"\[").replace("]", r"\]")):
        solve(ws, build_demand(ws, 95, False), hosts, target, SolveOptions(time_limit=2))


def test_time_aware_beats_percentile_on_offset_peaks() -> None:
    import numpy as np

    from fleetops.footprint.model import Series

    hour = np.arange(48) % 24
    ws = []
    for i in range(8):  # each busy (6 cores) in its own 3-hour window, idle otherwise
        cpu = np.where((hour // 3) == i, 6.0, 0.5)
        ws.append(Workload(f"v{i}", series=Series(hour=hour, cpu=cpu, memory_gb=np.ones(48))))
    flat = plan_for(ws)
    d = build_demand(ws, 95, True)
    timed = solve(ws, d, [], T, SolveOptions(time_limit=5))
    assert check_plan(timed, ws, d) == []
    assert timed.hosts_used < flat.hosts_used


def test_synthetic_1k_within_goal() -> None:
    inv = generate(1000, seed=3)
    d = build_demand(inv.workloads, 95, True)
    p = solve(inv.workloads, d, [], TargetType("h", 64, 768), SolveOptions(time_limit=10))
    assert check_plan(p, inv.workloads, d) == []
    assert p.hosts_used <= 1.05 * p.lower_bound
    assert p.hosts_used <= p.ffd_hosts


def test_bad_csv_names_file_line_field(tmp_path: Path) -> None:
    (tmp_path / "workloads.csv").write_text("workload,cpu,memory_gb\nok,1,2\nbad,lots,2\n")
    with pytest.raises(ValidationError, match=r"workloads.csv: line 3: field 'cpu': not a number"):
        load("csv", tmp_path)
    (tmp_path / "workloads.csv").write_text("workload,cpu,memory_gb\nok,1,2\n")
    (tmp_path / "hosts.csv").write_text("host,cpu,memory_gb\nh1,8,\n")
    with pytest.raises(ValidationError, match=r"hosts.csv: line 2: field 'memory_gb': missing"):
        load("csv", tmp_path)


def test_bad_bitbrains_row(tmp_path: Path) -> None:
    head = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\ta;\tb;\tc;\td\n"
    good = "1372629804;\t2;\t5851.9;\t87.7;\t1.5;\t8218624.0;\t1034592.8;\t0;\t0;\t0;\t0\n"
    (tmp_path / "7.csv").write_text(head + good + good.replace("87.7", "x"))
    with pytest.raises(ValidationError, match=r"7.csv: line 3: field 'CPU usage \[MHZ\]'"):
        load("bitbrains", tmp_path)


def _runner_plan(tmp_path: Path, *args: str) -> object:
    return CliRunner().invoke(footprint_app, ["plan", *args, "--out", str(tmp_path / "out")])


def test_cli_contract(tmp_path: Path) -> None:
    src = tmp_path / "inv"
    src.mkdir()
    (src / "workloads.csv").write_text(
        "workload,cpu_p95,memory_gb_p95,app_group\n"
        + "".join(f"w{i},{1 + i % 3},{2 + i % 5},g{i % 4}\n" for i in range(40))
    )
    r = CliRunner().invoke(
        footprint_app,
        [
            "plan",
            "--format",
            "csv",
            "--input",
            str(src),
            "--host-cpu",
            "16",
            "--host-memory-gb",
            "64",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert r.exit_code == 0, r.output
    for key in ("hosts used:", "lower bound:", "gap:", "footprint reduction:"):
        assert key in r.output
    out = tmp_path / "out"
    assert {"workloads.csv", "hosts.csv", "placement.csv", "report.html"} <= {
        p.name for p in out.iterdir()
    }
    import csv as _csv

    dem = {
        r["workload"]: float(r["cpu_demand"])
        for r in _csv.DictReader((out / "workloads.csv").open())
    }
    cap = {r["host"]: float(r["cpu_capacity"]) for r in _csv.DictReader((out / "hosts.csv").open())}
    used: dict[str, float] = {}
    for row in _csv.DictReader((out / "placement.csv").open()):
        used[row["host"]] = used.get(row["host"], 0) + dem[row["workload"]]
    assert all(used[h] <= 0.8 * cap[h] + 1e-9 for h in used) and len(dem) == 40
    assert CliRunner().invoke(footprint_app, ["report", str(out)]).exit_code == 0
    assert (
        CliRunner()
        .invoke(footprint_app, ["import", "--format", "csv", "--input", str(src)])
        .exit_code
        == 0
    )
    bad = CliRunner().invoke(
        footprint_app,
        [
            "plan",
            "--format",
            "csv",
            "--input",
            str(src),
            "--host-cpu",
            "1",
            "--host-memory-gb",
            "64",
            "--out",
            str(out),
        ],
    )
    assert bad.exit_code == 2 and "error:" in bad.output


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("fmt", "sub", "count"),
    [
        ("bitbrains", "bitbrains_rnd/2013-7", 300),
        ("planetlab", "planetlab/20110303.tar.gz", 1052),
        ("azure", "azure2017_cpu", 100),
        ("alibaba", "alibaba_gpu2023", 5193),
    ],
)
def test_real_trace_importers(fmt: str, sub: str, count: int) -> None:
    inv = load(fmt, require_shared("vm_traces") / sub)
    assert len(inv.workloads) == count
    d = build_demand(inv.workloads, 95, fmt != "alibaba")
    assert (d.values >= 0).all() and d.values[:, 0].max() > 0


def test_fit_profile_amplitude_in_generator_domain() -> None:
    """A near-idle VM with one busy hour must not drag the fitted amplitude above 0.95."""
    import numpy as np

    from fleetops.footprint.model import Inventory, Series
    from fleetops.footprint.synth import fit_profile

    hour = np.arange(288) // 12
    ws = []
    for i in range(12):
        cpu = np.where(hour == i, 4.0, 0.01)  # amplitude (max - min) / 2 / mean ~ 11
        ws.append(
            Workload(
                f"v{i}",
                series=Series(hour=hour, cpu=cpu, memory_gb=np.ones(288)),
                cpu_alloc=4,
                memory_alloc_gb=8,
            )
        )
    pr = fit_profile(Inventory("t", workloads=ws))
    assert 0 <= pr.diurnal[0] <= 0.95
    assert abs(sum(pr.peak_hours) - 1) < 1e-9


def test_plan_chooses_the_cheapest_target_type(tmp_path: Path) -> None:
    src = tmp_path / "inv"
    src.mkdir()
    (src / "workloads.csv").write_text(
        "workload,cpu_p95,memory_gb_p95\n" + "".join(f"w{i},3,4\n" for i in range(30))
    )
    # 30 workloads of 3 cores at 80 % headroom: a small box (9.6 usable cores) holds 3,
    # so 10 cost 1,000; a large one (25.6) holds 8, so 4 cost 1,600; tiny holds none
    (src / "targets.csv").write_text(
        "name,cpu,memory_gb,price_per_month\nsmall,12,64,100\nlarge,32,128,400\ntiny,2,4,10\n"
    )
    result = CliRunner().invoke(
        footprint_app,
        ["plan", "--format", "csv", "--input", str(src), "--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 0, result.output
    assert "type small: 10 hosts, 1,000/month ← chosen" in result.output
    assert "type large: 4 hosts, 1,600/month" in result.output
    assert "type tiny: infeasible" in result.output
    placement = (tmp_path / "out" / "placement.csv").read_text().splitlines()
    assert len(placement) == 31


def test_plan_without_host_size_or_targets_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "inv"
    src.mkdir()
    (src / "workloads.csv").write_text("workload,cpu_p95,memory_gb_p95\nw,1,1\n")
    result = CliRunner().invoke(footprint_app, ["plan", "--format", "csv", "--input", str(src)])
    assert result.exit_code == 2 and "lists no target types" in " ".join(result.output.split())

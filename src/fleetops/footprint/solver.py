"""Placement: first-fit-decreasing, a lower bound, and CP-SAT improvement.

Small instances get one CP-SAT model over every candidate host, warm-started from FFD,
whose proven bound tightens the lower bound. Large ones are improved by large
neighbourhood search: CP-SAT repacks the workloads of a handful of hosts into one host
fewer, again and again until the time limit or the lower bound is reached.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from fleetops.footprint.model import (
    Demand,
    FloatArray,
    Host,
    InfeasibleError,
    Plan,
    TargetType,
    Workload,
)

EPS = 1e-9  # float slack shared with the checker: sums of floats are not exact
FULL_MODEL_LIMIT = 30_000  # unit x host pairs up to which one CP-SAT model covers everything


@dataclass
class SolveOptions:
    headroom: float = 0.8  # demand must stay under this share of CPU and memory
    time_limit: float = 30.0
    seed: int = 0
    use_existing: bool = False  # consolidate onto the existing hosts as well as targets
    lns_hosts: int = 8  # hosts per neighbourhood; grows when no improvement is found
    improve: bool = True  # False: FFD only (the baseline the bench compares with)


@dataclass
class _Unit:
    """Workloads that must share a host (an affinity group, or one workload)."""

    members: list[int]
    label: str
    site: str = ""
    licences: frozenset[str] = frozenset()
    pin: str = ""
    anti: frozenset[str] = frozenset()


@dataclass
class _Bin:
    host: Host
    cap: FloatArray  # usable capacity per dimension (headroom applied, inf = unlimited)
    existing: bool


@dataclass
class _State:
    bins: list[_Bin] = field(default_factory=list)
    loads: list[FloatArray] = field(default_factory=list)  # (3, nt) per bin
    members: list[list[int]] = field(default_factory=list)  # unit ids per bin
    anti: list[set[str]] = field(default_factory=list)


def usable_capacity(host: Host | TargetType, headroom: float) -> FloatArray:
    """What a host may hold: headroom on CPU and memory; storage 0 means unlimited."""
    storage = host.storage_gb if host.storage_gb > 0 else math.inf
    return np.array([host.cpu * headroom, host.memory_gb * headroom, storage])


def _units(workloads: list[Workload]) -> tuple[list[_Unit], list[str]]:
    reasons: list[str] = []
    groups: dict[str, list[int]] = {}
    units: list[_Unit] = []
    for i, w in enumerate(workloads):
        if w.affinity:
            groups.setdefault(w.affinity, []).append(i)
        else:
            units.append(_Unit([i], w.name))
    for name, members in groups.items():
        units.append(_Unit(members, f"affinity group {name!r}"))
    for u in units:
        ws = [workloads[i] for i in u.members]
        sites = {w.site for w in ws if w.site}
        pins = {w.pin_host for w in ws if w.pin_host}
        if len(sites) > 1:
            reasons.append(
                f"{u.label} must share a host but its members are bound to sites {sorted(sites)}"
            )
        if len(pins) > 1:
            reasons.append(
                f"{u.label} must share a host but its members are pinned to {sorted(pins)}"
            )
        seen: dict[str, str] = {}
        for w in ws:
            for g in w.anti_affinity:
                if g in seen:
                    reasons.append(
                        f"{u.label}: {seen[g]!r} and {w.name!r} must share a host (affinity) "
                        f"and must not (anti-affinity group {g!r})"
                    )
                seen[g] = w.name
        u.site = min(sites) if sites else ""
        u.pin = min(pins) if pins else ""
        u.licences = frozenset().union(*(w.licences for w in ws))
        u.anti = frozenset(seen)
    return units, reasons


class _Packer:
    """The whole placement problem in arrays, shared by FFD, the bound and CP-SAT."""

    def __init__(
        self,
        workloads: list[Workload],
        demand: Demand,
        hosts: list[Host],
        target: TargetType | None,
        options: SolveOptions,
    ) -> None:
        self.workloads = workloads
        self.demand = demand
        self.target = target
        self.options = options
        self.units, reasons = _units(workloads)
        self.D = (
            np.stack([demand.values[u.members].sum(axis=0) for u in self.units])
            if self.units
            else np.zeros((0, 3, demand.buckets))
        )
        self.peak = self.D.max(axis=2) if self.units else np.zeros((0, 3))
        self.by_name = {h.name: h for h in hosts}
        pinned = {u.pin for u in self.units if u.pin}
        # Existing hosts stay in play when a pin or a host-bound licence needs them.
        tlic = target.licences if target else frozenset()
        needed = (
            frozenset().union(*(u.licences - tlic for u in self.units))
            if self.units
            else frozenset()
        )
        pool = (
            hosts
            if (options.use_existing or target is None)
            else [h for h in hosts if h.name in pinned or h.licences & needed]
        )
        self.existing = [_Bin(h, usable_capacity(h, options.headroom), True) for h in pool]
        self.target_cap = usable_capacity(target, options.headroom) if target else None
        self.new_count = 0
        reasons += self._check()
        if reasons:
            raise InfeasibleError(reasons)

    # -- eligibility ----------------------------------------------------------------------

    def eligible(self, u: _Unit, b: _Bin) -> bool:
        h = b.host
        if u.pin:
            return h.name == u.pin
        return (not u.site or u.site == h.site) and u.licences <= h.licences

    def target_ok(self, u: _Unit) -> bool:
        return self.target is not None and not u.pin and u.licences <= self.target.licences

    def _check(self) -> list[str]:
        """Every reason no plan can exist that can be seen before packing."""
        reasons: list[str] = []
        h = self.options.headroom
        for k, u in enumerate(self.units):
            if u.pin and u.pin not in self.by_name:
                reasons.append(f"{u.label} is pinned to unknown host {u.pin!r}")
                continue
            if u.pin:
                host = self.by_name[u.pin]
                if u.site and host.site != u.site:
                    reasons.append(
                        f"{u.label} is pinned to {u.pin!r} at site {host.site!r} but must stay in site {u.site!r}"
                    )
                if not u.licences <= host.licences:
                    reasons.append(
                        f"{u.label} is pinned to {u.pin!r} which lacks licences {sorted(u.licences - host.licences)}"
                    )
            caps = [b.cap for b in self.existing if self.eligible(u, b)]
            if self.target_ok(u) and self.target_cap is not None:
                caps.append(self.target_cap)
            if not caps:
                where = f" at site {u.site!r}" if u.site else ""
                need = f" with licences {sorted(u.licences)}" if u.licences else ""
                reasons.append(
                    f"{u.label}: no host{where}{need} is available (target type lacks them)"
                )
                continue
            best = np.max(np.stack(caps), axis=0)
            for d, what, unit in ((0, "CPU", "cores"), (1, "memory", "GB"), (2, "storage", "GB")):
                if self.peak[k, d] > best[d] * (1 + EPS):
                    cap_note = f"{best[d] / h:g} x headroom {h:g}" if d < 2 else f"{best[d]:g}"
                    reasons.append(
                        f"{u.label} needs {self.peak[k, d]:.3g} {unit} of {what} "
                        f"({self.demand.definition.split(';')[0].split(' of ')[0]}) but the largest "
                        f"eligible host offers {best[d]:.3g} ({cap_note})"
                    )
        # Anti-affinity on a finite pool: a group needs as many distinct hosts as members.
        groups: dict[str, list[_Unit]] = {}
        for u in self.units:
            for g in u.anti:
                groups.setdefault(g, []).append(u)
        for g, us in groups.items():
            if all(self.target_ok(u) for u in us):
                continue
            hosts = {b.host.name for u in us for b in self.existing if self.eligible(u, b)}
            if len(hosts) < len(us):
                reasons.append(
                    f"anti-affinity group {g!r} has {len(us)} members but only {len(hosts)} eligible hosts"
                )
        return reasons

    # -- first-fit-decreasing -------------------------------------------------------------

    def _new_bin(self, u: _Unit) -> _Bin:
        assert self.target is not None and self.target_cap is not None
        self.new_count += 1
        t = self.target
        host = Host(
            name=f"{t.name}-{u.site or 'any'}-{self.new_count:05d}",
            cpu=t.cpu,
            memory_gb=t.memory_gb,
            storage_gb=t.storage_gb,
            power_w=t.power_w,
            site=u.site,
            type=t.name,
            licences=t.licences,
            cost_per_month=t.price_per_month,
        )
        return _Bin(host, self.target_cap.copy(), False)

    def ffd(self) -> _State:
        st = _State()
        nt = self.demand.buckets
        scale = (
            self.target_cap
            if self.target_cap is not None
            else np.max(np.stack([b.cap for b in self.existing]), axis=0)
        )
        norm = self.peak[:, :2] / scale[:2]
        # Pinned, then licence-bound units first: scarce hosts must not fill up with others.
        order = sorted(
            range(len(self.units)),
            key=lambda k: (
                not self.units[k].pin,
                not self.units[k].licences,
                -norm[k].max(),
                -norm[k].sum(),
            ),
        )
        cap = np.zeros((0, 3))
        load = np.zeros((0, 3, nt))
        sites: list[str] = []
        unopened = list(self.existing)
        for k in order:
            u = self.units[k]
            d = self.D[k]
            n = len(st.bins)
            mask = np.ones(n, dtype=bool)
            if u.site:
                mask &= np.array([s == u.site for s in sites], dtype=bool)
            if u.pin or u.licences or u.anti:
                mask &= np.array(
                    [
                        self.eligible(u, b) and not (u.anti & st.anti[j])
                        for j, b in enumerate(st.bins)
                    ],
                    dtype=bool,
                )
            if n:
                fits = np.all(load + d <= cap[:, :, None] * (1 + EPS) + EPS, axis=(1, 2)) & mask
                hit = np.flatnonzero(fits)
            else:
                hit = np.zeros(0, dtype=np.int64)
            if hit.size:
                j = int(hit[0])
            else:
                b = self._open(u, d, unopened)
                st.bins.append(b)
                st.loads.append(np.zeros((3, nt)))
                st.members.append([])
                st.anti.append(set())
                sites.append(b.host.site)
                cap = np.vstack([cap, np.where(np.isinf(b.cap), 1e300, b.cap)[None]])
                load = np.concatenate([load, np.zeros((1, 3, nt))])
                j = n
            load[j] += d
            st.members[j].append(k)
            st.anti[j] |= u.anti
        st.loads = [load[j] for j in range(len(st.bins))]
        return st

    def balanced(self, count: int) -> _State | None:
        """Pack into ``count`` target hosts, each workload onto the host whose peak it raises
        least (worst fit): spreads workloads whose busy hours differ. Single-site, target-only
        instances only; None when it does not fit."""
        if self.target_cap is None or self.existing or len({u.site for u in self.units}) > 1:
            return None
        if not all(self.target_ok(u) for u in self.units):
            return None
        nt = self.demand.buckets
        cap = self.target_cap[:2, None]
        load = np.zeros((count, 2, nt))
        anti: list[set[str]] = [set() for _ in range(count)]
        members: list[list[int]] = [[] for _ in range(count)]
        norm = self.peak[:, :2] / self.target_cap[:2]
        order = sorted(range(len(self.units)), key=lambda k: (-norm[k].max(), -norm[k].sum()))
        for k in order:
            u = self.units[k]
            after = (load + self.D[k, :2]) / cap
            worst = after.max(axis=(1, 2))
            if u.anti:
                worst[[j for j in range(count) if anti[j] & u.anti]] = np.inf
            j = int(np.argmin(worst))
            if worst[j] > 1 + EPS:
                return None
            load[j] += self.D[k, :2]
            members[j].append(k)
            anti[j] |= u.anti
        st = _State()
        for j in range(count):
            if not members[j]:
                continue
            st.bins.append(self._new_bin(self.units[members[j][0]]))
            st.loads.append(np.concatenate([load[j], self.D[members[j], 2:].sum(axis=0)]))
            st.members.append(members[j])
            st.anti.append(anti[j])
        if any(np.any(st.loads[j][2] > st.bins[j].cap[2] * (1 + EPS)) for j in range(len(st.bins))):
            return None
        return st

    def _open(self, u: _Unit, d: FloatArray, unopened: list[_Bin]) -> _Bin:
        if self.target_ok(u):
            return self._new_bin(u)
        cands = [
            b
            for b in unopened
            if self.eligible(u, b) and np.all(d <= b.cap[:, None] * (1 + EPS) + EPS)
        ]
        if not cands:
            where = f" at site {u.site!r}" if u.site else ""
            raise InfeasibleError(
                [
                    f"{u.label}: the existing hosts{where} that may hold it are full "
                    "(pins, licences, anti-affinity or capacity) and the target type cannot take it"
                ]
            )
        best = max(cands, key=lambda b: float(b.cap[:2].sum()))
        unopened.remove(best)
        return best

    # -- lower bound ----------------------------------------------------------------------

    def _bound(self, ks: list[int], caps: list[FloatArray], unlimited: FloatArray | None) -> int:
        if not ks:
            return 0
        dem = self.D[ks]
        best = 1
        for d in range(3):
            finite = sorted((float(c[d]) for c in caps), reverse=True)
            tcap = None if unlimited is None else float(unlimited[d])
            if (tcap is not None and math.isinf(tcap)) or any(math.isinf(c) for c in finite):
                continue
            biggest = max([*finite, tcap or 0.0])
            totals = dem[:, d, :].sum(axis=0)
            best = max(best, *(_min_bins(float(x), finite, tcap) for x in totals))
            # Two workloads over half the largest host in the same hour cannot share.
            best = max(best, int((dem[:, d, :] > biggest / 2 * (1 + EPS)).sum(axis=0).max()))
        anti: dict[str, int] = {}
        for k in ks:
            for g in self.units[k].anti:
                anti[g] = anti.get(g, 0) + 1
        best = max(best, max(anti.values(), default=0), len({self.units[k].pin for k in ks} - {""}))
        return best

    def lower_bound(self) -> int:
        n = len(self.units)
        if n == 0:
            return 0
        sites = sorted({u.site for u in self.units} - {""})
        per_site = 0
        for s in sites:
            ks = [k for k in range(n) if self.units[k].site == s]
            caps = [b.cap for b in self.existing if b.host.site == s]
            unlimited = self.target_cap if any(self.target_ok(self.units[k]) for k in ks) else None
            per_site += self._bound(ks, caps, unlimited)
        unlimited = self.target_cap if any(self.target_ok(u) for u in self.units) else None
        overall = self._bound(list(range(n)), [b.cap for b in self.existing], unlimited)
        return max(per_site, overall)

    # -- CP-SAT ---------------------------------------------------------------------------

    def cpsat(
        self,
        ks: list[int],
        bins: list[_Bin],
        hint: dict[int, int],
        max_bins: int,
        seconds: float,
        symmetric: list[list[int]] | None = None,
    ) -> tuple[dict[int, int] | None, float, bool]:
        """Place units ``ks`` on ``bins`` using at most ``max_bins``; (assignment, bound, optimal)."""
        m = cp_model.CpModel()
        nt = self.demand.buckets
        finite = np.stack([np.where(np.isinf(b.cap), 0, b.cap) for b in bins])
        top = max(float(finite.max()), 1e-9)
        scale = 1e6 / top
        y = [m.new_bool_var(f"y{j}") for j in range(len(bins))]
        x: dict[tuple[int, int], cp_model.IntVar] = {}
        for k in ks:
            u = self.units[k]
            opts = []
            for j, b in enumerate(bins):
                if self.eligible(u, b) and np.all(self.D[k] <= b.cap[:, None] * (1 + EPS) + EPS):
                    v = m.new_bool_var("")
                    x[k, j] = v
                    m.add_implication(v, y[j])
                    opts.append(v)
            if not opts:
                return None, math.inf, True
            m.add_exactly_one(opts)
        for j, b in enumerate(bins):
            on = [k for k in ks if (k, j) in x]
            for d in range(3):
                if math.isinf(b.cap[d]):
                    continue
                cap_i = math.floor(b.cap[d] * scale)
                coef = (
                    np.ceil(self.D[on, d, :] * scale - 1e-6).astype(np.int64)
                    if on
                    else np.zeros((0, nt), dtype=np.int64)
                )
                for t in range(nt):
                    if on and int(coef[:, t].sum()) > cap_i:
                        m.add(
                            sum(int(c) * x[k, j] for k, c in zip(on, coef[:, t], strict=True) if c)
                            <= cap_i * y[j]
                        )
            groups: dict[str, list[cp_model.IntVar]] = {}
            for k in on:
                for g in self.units[k].anti:
                    groups.setdefault(g, []).append(x[k, j])
            for vs in groups.values():
                if len(vs) > 1:
                    m.add_at_most_one(vs)
        for chain in symmetric or []:
            for a, b2 in itertools.pairwise(chain):
                m.add(y[a] >= y[b2])  # identical new hosts: use them in order
        m.add(sum(y) <= max_bins)
        m.minimize(sum(y))
        for (k, j), v in x.items():
            m.add_hint(v, hint.get(k) == j)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(seconds, 0.05)
        solver.parameters.num_workers = 2  # the planning machine has 2 cores
        solver.parameters.random_seed = self.options.seed
        status = solver.solve(m)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return (
                None,
                (math.inf if status == cp_model.INFEASIBLE else solver.best_objective_bound),
                status == cp_model.INFEASIBLE,
            )
        out = {k: j for (k, j), v in x.items() if solver.boolean_value(v)}
        return out, solver.best_objective_bound, status == cp_model.OPTIMAL


def _min_bins(total: float, finite: list[float], unlimited: float | None) -> int:
    """Fewest hosts whose capacities add up to ``total`` (largest first is optimal)."""
    if total <= EPS:
        return 0
    n, acc = 0, 0.0
    for c in finite:
        if unlimited is not None and c < unlimited:
            break
        n, acc = n + 1, acc + c
        if acc >= total * (1 - EPS):
            return n
    if unlimited is not None and unlimited > 0:
        return n + math.ceil((total - acc) / unlimited * (1 - EPS))
    rest = [c for c in finite if unlimited is not None and c < unlimited]
    for c in rest:
        n, acc = n + 1, acc + c
        if acc >= total * (1 - EPS):
            return n
    return n


def solve(
    workloads: list[Workload],
    demand: Demand,
    hosts: list[Host],
    target: TargetType | None,
    options: SolveOptions | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> Plan:
    """Place every workload; raises :class:`InfeasibleError` naming what cannot be met."""
    opts = options or SolveOptions()
    start = time.monotonic()
    deadline = start + opts.time_limit
    note = progress or (lambda _msg, _frac: None)
    p = _Packer(workloads, demand, hosts, target, opts)
    note("first-fit-decreasing", 0.0)
    st = p.ffd()
    ffd_hosts = len(st.bins)
    lb = p.lower_bound()
    log = [f"FFD: {ffd_hosts} hosts; combinatorial lower bound {lb}"]
    optimal = ffd_hosts <= lb
    if opts.improve and not optimal:
        pairs = len(p.units) * (ffd_hosts + len(p.existing))
        # Worst fit into a fixed host count balances peaks; try counts upward from the bound.
        for count in range(lb, ffd_hosts):
            if time.monotonic() > deadline:
                break
            alt = p.balanced(count)
            if alt is not None:
                log.append(f"balanced repack: {len(alt.bins)} hosts")
                st = alt
                break
        if len(st.bins) <= lb:
            optimal = True
        elif pairs <= FULL_MODEL_LIMIT:
            st, lb, optimal = _full(p, st, lb, deadline, log)
        else:
            st = _lns(p, st, lb, deadline, log, note)
            optimal = len(st.bins) <= lb
    plan_hosts: dict[str, Host] = {}
    assignment: dict[str, str] = {}
    for j, b in enumerate(st.bins):
        if not st.members[j]:
            continue
        plan_hosts[b.host.name] = b.host
        for k in st.members[j]:
            for i in p.units[k].members:
                assignment[workloads[i].name] = b.host.name
    note("done", 1.0)
    return Plan(
        assignment=assignment,
        hosts=plan_hosts,
        headroom=opts.headroom,
        lower_bound=lb,
        ffd_hosts=ffd_hosts,
        solve_seconds=time.monotonic() - start,
        optimal=optimal,
        log=log,
    )


def _rebuild(p: _Packer, bins: list[_Bin], where: dict[int, int]) -> _State:
    st = _State()
    index: dict[int, int] = {}
    for k, j in sorted(where.items()):
        if j not in index:
            index[j] = len(st.bins)
            st.bins.append(bins[j])
            st.loads.append(np.zeros((3, p.demand.buckets)))
            st.members.append([])
            st.anti.append(set())
        n = index[j]
        st.loads[n] += p.D[k]
        st.members[n].append(k)
        st.anti[n] |= p.units[k].anti
    return st


def _full(
    p: _Packer, st: _State, lb: int, deadline: float, log: list[str]
) -> tuple[_State, int, bool]:
    """One model over all units; the candidate hosts are enough copies of the target per site."""
    hint = {k: j for j, ms in enumerate(st.members) for k in ms}
    bins = list(st.bins)
    used_existing = {b.host.name for b in bins if b.existing}
    bins += [b for b in p.existing if b.host.name not in used_existing]
    # The optimum never needs more target hosts at a site than FFD used in all.
    chains: list[list[int]] = []
    for site in sorted({p.units[k].site for k in range(len(p.units)) if p.target_ok(p.units[k])}):
        chain = [j for j, b in enumerate(bins) if not b.existing and b.host.site == site]
        need = min(len(st.bins), sum(1 for u in p.units if u.site == site and p.target_ok(u)))
        while len(chain) < need:
            u = next(u for u in p.units if u.site == site and p.target_ok(u))
            bins.append(p._new_bin(u))
            chain.append(len(bins) - 1)
        chains.append(chain)
    ks = list(range(len(p.units)))
    where, bound, optimal = p.cpsat(
        ks, bins, hint, len(st.bins), deadline - time.monotonic(), chains
    )
    if math.isfinite(bound):
        lb = max(lb, math.ceil(bound - 1e-6))
    if where is None:
        log.append(f"CP-SAT full model: no better plan in time; bound {bound:g}")
        return st, lb, len(st.bins) <= lb
    new = _rebuild(p, bins, where)
    log.append(f"CP-SAT full model: {len(new.bins)} hosts, bound {bound:g}, optimal={optimal}")
    return new, lb, optimal or len(new.bins) <= lb


def _lns(
    p: _Packer,
    st: _State,
    lb: int,
    deadline: float,
    log: list[str],
    note: Callable[[str, float], None],
) -> _State:
    rng = np.random.default_rng(p.options.seed)
    k = p.options.lns_hosts
    tried = 0
    improved = 0
    start_bins = len(st.bins)
    total = max(deadline - time.monotonic(), 1e-9)
    while time.monotonic() < deadline - 0.05 and len(st.bins) > lb:
        note("CP-SAT improvement", 1 - (deadline - time.monotonic()) / total)
        n = len(st.bins)
        fill = np.array(
            [
                float(np.max(st.loads[j][:2] / np.maximum(st.bins[j].cap[:2, None], 1e-12)))
                for j in range(n)
            ]
        )
        order = np.argsort(fill)
        # The emptiest hosts plus a random handful from the emptier half: varied neighbourhoods.
        first = int(order[min(int(rng.integers(0, 3)), n - 1)])
        site = st.bins[first].host.site
        pool = [
            int(j)
            for j in order[: max(n // 2, k)]
            if int(j) != first and st.bins[int(j)].host.site == site
        ]
        if not pool:
            pool = [int(j) for j in order if int(j) != first]
        take: list[int] = (
            [int(i) for i in rng.choice(len(pool), size=min(k - 1, len(pool)), replace=False)]
            if pool
            else []
        )
        chosen = [first, *(pool[int(i)] for i in take)]
        tried += 1
        sub_load = sum(st.loads[j] for j in chosen)
        caps = np.stack([st.bins[j].cap for j in chosen])
        with np.errstate(invalid="ignore"):  # inf - inf: storage not limited
            room = np.nan_to_num(caps.sum(axis=0) - caps.min(axis=0), nan=np.inf)
        if len(chosen) < 2 or np.any(sub_load > room[:, None] * (1 + EPS)):
            k = min(k + 1, 24)
            continue
        ks = [kk for j in chosen for kk in st.members[j]]
        bins = [st.bins[j] for j in chosen]
        hint = {kk: i for i, j in enumerate(chosen) for kk in st.members[j]}
        secs = min(2.0, deadline - time.monotonic())
        where, _, _ = p.cpsat(ks, bins, hint, len(chosen) - 1, secs)
        if where is None:
            continue
        improved += 1
        sub = _rebuild(p, bins, where)
        keep = [j for j in range(n) if j not in set(chosen)]
        st = _State(
            bins=[st.bins[j] for j in keep] + sub.bins,
            loads=[st.loads[j] for j in keep] + sub.loads,
            members=[st.members[j] for j in keep] + sub.members,
            anti=[st.anti[j] for j in keep] + sub.anti,
        )
    log.append(
        f"CP-SAT LNS: {start_bins} -> {len(st.bins)} hosts in {tried} neighbourhoods ({improved} improved)"
    )
    return st

"""Seeded synthetic inventories whose demand distributions are fitted to real traces."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleetops.footprint.model import HOURS, Inventory, Series, Workload


@dataclass
class Profile:
    """Per-VM distributions; defaults fitted to Bitbrains Rnd 2013-7 (VMs 1-300)."""

    cores: dict[float, float] = field(
        default_factory=lambda: {1: 0.31, 2: 0.19, 4: 0.32, 8: 0.17, 16: 0.01}
    )
    mem_per_core_log: tuple[float, float] = (0.55, 0.9)  # ln GB per core: mean, sd
    cpu_util_log: tuple[float, float] = (-3.9, 1.3)  # ln of mean CPU utilisation (fraction)
    mem_util_log: tuple[float, float] = (-1.2, 0.8)  # ln of mean memory used / provisioned
    diurnal: tuple[float, float] = (0.35, 0.25)  # relative daily amplitude: mean, sd
    peak_hours: list[float] = field(default_factory=lambda: [1 / HOURS] * HOURS)
    noise: float = 0.35  # sd of ln multiplicative noise per sample


def fit_profile(inv: Inventory) -> Profile:
    """Fit :class:`Profile` to workloads that carry series and provisioned sizes."""
    ws = [
        w
        for w in inv.workloads
        if w.series is not None and w.cpu_alloc > 0 and w.memory_alloc_gb > 0
    ]
    if len(ws) < 10:
        return Profile()
    cores = np.array([w.cpu_alloc for w in ws])
    vals, counts = np.unique(cores, return_counts=True)
    mpc = np.log([w.memory_alloc_gb / w.cpu_alloc for w in ws])
    util, mem, amp = [], [], []
    peaks = np.zeros(HOURS)
    for w in ws:
        s = w.series
        assert s is not None
        util.append(max(float(s.cpu.mean()) / w.cpu_alloc, 1e-4))
        mem.append(min(max(float(s.memory_gb.mean()) / w.memory_alloc_gb, 1e-3), 1.0))
        hourly = np.bincount(s.hour, weights=s.cpu, minlength=HOURS) / np.maximum(
            np.bincount(s.hour, minlength=HOURS), 1
        )
        if hourly.mean() > 0:
            # Fit in the generator's domain: it clips amplitudes to [0, 0.95]; unclipped,
            # near-idle VMs with one busy hour give amplitudes of 10+ that swamp the mean.
            amp.append(min(float((hourly.max() - hourly.min()) / 2 / hourly.mean()), 0.95))
            peaks[int(hourly.argmax())] += 1
    lu, lm = np.log(util), np.log(mem)
    return Profile(
        cores={float(v): float(c) / len(ws) for v, c in zip(vals, counts, strict=True)},
        mem_per_core_log=(float(mpc.mean()), float(mpc.std())),
        cpu_util_log=(float(lu.mean()), float(lu.std())),
        mem_util_log=(float(lm.mean()), float(lm.std())),
        diurnal=(float(np.mean(amp)), float(np.std(amp))) if amp else Profile().diurnal,
        peak_hours=[float(x) for x in peaks / peaks.sum()] if amp else Profile().peak_hours,
    )


def generate(n: int, seed: int = 0, profile: Profile | None = None, days: int = 2) -> Inventory:
    """``n`` workloads with 5-minute CPU and memory series over ``days`` days."""
    pr = profile or Profile()
    rng = np.random.default_rng(seed)
    steps = days * 288
    hour = (np.arange(steps) // 12) % HOURS
    sizes = np.array(list(pr.cores))
    probs = np.array(list(pr.cores.values()))
    cores = rng.choice(sizes, size=n, p=probs / probs.sum())
    mem_alloc = cores * np.exp(rng.normal(*pr.mem_per_core_log, size=n))
    util = np.minimum(np.exp(rng.normal(*pr.cpu_util_log, size=n)), 0.9)
    mem_util = np.minimum(np.exp(rng.normal(*pr.mem_util_log, size=n)), 0.95)
    amp = np.clip(rng.normal(*pr.diurnal, size=n), 0, 0.95)
    peak = rng.choice(HOURS, size=n, p=np.array(pr.peak_hours) / sum(pr.peak_hours))
    phase = 2 * np.pi * (hour[None, :] - peak[:, None]) / HOURS
    shape = 1 + amp[:, None] * np.cos(phase)
    noise = np.exp(rng.normal(0, pr.noise, size=(n, steps)) - pr.noise**2 / 2)
    cpu = np.minimum(util[:, None] * shape * noise, 1.0) * cores[:, None]
    mem_noise = np.exp(rng.normal(0, pr.noise / 4, size=(n, steps)))
    mem = (
        np.minimum(mem_util[:, None] * (1 + 0.2 * amp[:, None] * np.cos(phase)) * mem_noise, 1.0)
        * mem_alloc[:, None]
    )
    inv = Inventory(source=f"synthetic n={n} seed={seed}")
    for i in range(n):
        inv.workloads.append(
            Workload(
                name=f"vm{i:05d}",
                series=Series(hour=hour, cpu=cpu[i], memory_gb=mem[i]),
                cpu_alloc=float(cores[i]),
                memory_alloc_gb=float(mem_alloc[i]),
                app_group=f"app{i // 8:04d}",
            )
        )
    inv.notes.append("generated: demand distributions from a fitted Profile (see footprint.synth)")
    return inv

"""``fleetops ota campaign``: create, run and inspect rollout campaigns; simulate and test."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from fleetops.cli_support import console, errors, out
from fleetops.core.errors import ConfigError, ValidationError

campaign_app = typer.Typer(
    help="OTA rollout campaigns: waves, automatic halt, virtual-fleet testing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store", help="Campaign folder (default $FLEETOPS_CAMPAIGNS or <data>/ota/campaigns)."
    ),
]
ActorOption = Annotated[
    str | None, typer.Option("--actor", help="Who does it (default: your user).")
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")]
BehaviourOption = Annotated[
    str,
    typer.Option(
        "--release",
        help="Release behaviour: a preset (clean, faulty-dtc, faulty-boot, faulty-can, "
        "faulty-install) or a YAML/JSON file.",
    ),
]


def _store(path: Path | None) -> object:
    from fleetops.ota.rollout.store import CampaignStore

    return CampaignStore(path)


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _parse_image(text: str, what: str) -> tuple[str, str, str]:
    hw, sep, rest = text.partition("=")
    name, sep2, version = rest.rpartition(":")
    if not sep or not sep2 or not hw or not name or not version:
        raise ValidationError(f"{what} {text!r} is not HARDWARE_ID=TARGET_NAME:VERSION")
    return hw.strip(), name.strip(), version.strip()


@campaign_app.command()
def create(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="Cohort criterion field=value[,value] (model, model_year, "
            "region, ecu, hardware_id, software_version); repeat.",
        ),
    ] = None,
    image: Annotated[
        list[str] | None,
        typer.Option("--image", help="HARDWARE_ID=TARGET_NAME:VERSION of the release; repeat."),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Without --image: target <hardware id>-<version>.bin for "
            "every hardware id of the cohort.",
        ),
    ] = None,
    rollback_image: Annotated[
        list[str] | None,
        typer.Option("--rollback-image", help="HARDWARE_ID=TARGET_NAME:VERSION to roll back to."),
    ] = None,
    waves: Annotated[str, typer.Option(help="Cumulative wave shares in percent.")] = "1,10,50,100",
    success_threshold: Annotated[
        float, typer.Option(help="Share of a wave installed before the next.")
    ] = 0.9,
    error_threshold: Annotated[
        float, typer.Option(help="Share of a wave failing that halts.")
    ] = 0.05,
    soak_days: Annotated[float, typer.Option(help="Minimum days before the next wave.")] = 2.0,
    alpha: Annotated[float, typer.Option(help="Campaign-wide false-halt bound.")] = 0.05,
    margin: Annotated[float, typer.Option(help="Acceptable relative rate increase.")] = 0.25,
    power: Annotated[
        float,
        typer.Option(help="Power at the minimum effects before a wave widens (0: no power gate)."),
    ] = 0.8,
    min_effect: Annotated[
        list[str] | None,
        typer.Option(
            "--min-effect",
            help="SIGNAL=EFFECT: smallest regression the gate must be able to catch "
            "(extra events per vehicle-day; extra install failure share); repeat.",
        ),
    ] = None,
    max_power_wait: Annotated[
        float, typer.Option(help="Days a wave may wait for power before the campaign pauses.")
    ] = 14.0,
    lake: Annotated[
        Path | None, typer.Option(help="Lake with the vehicles and ecus tables.")
    ] = None,
    simulate: Annotated[
        int | None, typer.Option("--simulate", help="Use a simulated fleet of this many vehicles.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the wave shuffle (and a simulated fleet).")] = 0,
    store: StoreOption = None,
    actor: ActorOption = None,
) -> None:
    """Create a draft campaign for a cohort of the fleet."""
    import polars as pl

    from fleetops.ota.rollout.campaign import Campaign, Image, Release, waves_from_shares
    from fleetops.ota.rollout.cohort import CohortSpec
    from fleetops.ota.rollout.health import DEFAULT_MIN_EFFECTS, HaltPolicy
    from fleetops.ota.rollout.store import CampaignStore

    with errors():
        spec = CohortSpec.parse(where or [])
        try:
            shares = [float(s) for s in waves.split(",") if s.strip()]
        except ValueError as exc:
            raise ValidationError(f"--waves {waves!r} is not a list of numbers") from exc
        wave_specs = waves_from_shares(shares, success_threshold, error_threshold, soak_days)
        effects = dict(DEFAULT_MIN_EFFECTS)
        for text in min_effect or []:
            signal, sep, value = text.partition("=")
            try:
                effects[signal.strip()] = float(value)
            except ValueError:
                sep = ""
            if not sep:
                raise ValidationError(f"--min-effect {text!r} is not SIGNAL=NUMBER")
        policy = HaltPolicy(
            alpha=alpha,
            rate_margin=margin,
            power=power,
            min_effects=effects,
            max_power_wait_days=max_power_wait,
        )
        if simulate is not None:
            from fleetops.ota.rollout.rollout_sim import simulated_inventory

            veh, ecus = simulated_inventory(simulate, seed)
        else:
            from fleetops.config import lake_dir
            from fleetops.core.lake import Lake

            lk = Lake(lake or lake_dir())
            if "vehicles" not in lk.tables() or "ecus" not in lk.tables():
                raise ConfigError(
                    f"the lake {lk.root} has no vehicles/ecus tables (or use --simulate)"
                )
            v, e = pl.from_arrow(lk.read("vehicles")), pl.from_arrow(lk.read("ecus"))
            assert isinstance(v, pl.DataFrame) and isinstance(e, pl.DataFrame)
            veh, ecus = v, e
        images: dict[str, Image] = {}
        for text in image or []:
            hw, tn, ver = _parse_image(text, "--image")
            images[hw] = Image(tn, ver)
        if not images:
            if version is None:
                raise ValidationError("give the release: --image HW=NAME:VERSION or --version")
            from fleetops.ota.rollout.cohort import select_cohort

            hws = select_cohort(veh, ecus, spec)["hardware_id"].unique().sort().to_list()
            images = {h: Image(f"{h}-{version}.bin", version) for h in hws}
        back = {
            h: Image(n, v)
            for h, n, v in (_parse_image(t, "--rollback-image") for t in rollback_image or [])
        }
        release = Release(name, images, back)
        campaign = Campaign.create(
            name,
            release,
            spec,
            veh,
            ecus,
            waves=wave_specs,
            policy=policy,
            seed=seed,
            actor=_actor(actor),
        )
        path = CampaignStore(store).save(campaign)
        out.print(
            f"{campaign.campaign_id}: draft, {campaign.members.height} ECUs in "
            f"{len(wave_specs)} waves ({path})"
        )


@campaign_app.command("list")
def list_(store: StoreOption = None) -> None:
    """Every campaign: state, release, cohort size, installed."""
    from fleetops.ota.rollout.store import CampaignStore

    with errors():
        view = Table()
        for col in ("id", "name", "state", "release", "ecus", "installed", "wave"):
            view.add_column(col)
        for c in CampaignStore(store).all():
            view.add_row(
                c.campaign_id,
                c.name,
                c.state.value,
                c.release.name,
                str(c.members.height),
                str(c.treated_count()),
                str(c.current_wave),
            )
        out.print(view)


@campaign_app.command()
def show(
    campaign_id: Annotated[str, typer.Argument()],
    as_json: Annotated[
        bool, typer.Option("--json", help="Everything but the member list, as JSON.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Waves, state, transitions and halt evidence of a campaign."""
    from fleetops.ota.rollout.store import CampaignStore

    with errors():
        c = CampaignStore(store).load(campaign_id)
        if as_json:
            d = c.to_dict()
            d.pop("members")
            d.pop("installs")
            out.print_json(orjson.dumps(d).decode())
            return
        out.print(
            f"[bold]{c.campaign_id}[/] {c.name}: [bold]{c.state.value}[/], release "
            f"{c.release.name}, cohort {c.cohort.describe()}"
        )
        waves = Table(title="waves")
        for col in c.wave_summary().columns:
            waves.add_column(col)
        for row in c.wave_summary().iter_rows():
            waves.add_row(*("" if x is None else str(x) for x in row))
        out.print(waves)
        gate = c.power_gate
        if gate is not None and c.state.value in ("running", "paused"):
            out.print(f"power gate, wave {gate['wave']}: {gate['reason']}")
        log = Table(title="transitions")
        for col in ("time", "from", "to", "actor", "reason"):
            log.add_column(col, overflow="fold")
        for t in c.transitions:
            log.add_row(t["time"], str(t["from"]), t["to"], t["actor"], t["reason"])
        out.print(log)
        ev = c.halt_evidence
        if ev is not None:
            out.print("[bold red]halt evidence[/]")
            out.print_json(
                orjson.dumps({k: v for k, v in ev.items() if k != "all_signals"}).decode()
            )
        if c.virtual_test is not None:
            out.print(
                f"virtual-fleet test: {c.virtual_test['verdict']} ({c.virtual_test['reason']})"
            )


def _transition(
    campaign_id: str,
    store: Path | None,
    action: str,
    actor: str | None,
    reason: str,
    **options: bool,
) -> None:
    from fleetops.ota.rollout.store import CampaignStore

    with errors():
        st = CampaignStore(store)
        c = st.load(campaign_id)
        getattr(c, action)(_actor(actor), reason, **options)
        st.save(c)
        out.print(f"{c.campaign_id}: {c.state.value}")


@campaign_app.command()
def start(
    campaign_id: str,
    actor: ActorOption = None,
    reason: ReasonOption = "start",
    store: StoreOption = None,
) -> None:
    """Release wave 1 (refused if the virtual-fleet test blocked the release)."""
    _transition(campaign_id, store, "start", actor, reason)


@campaign_app.command()
def pause(
    campaign_id: str,
    actor: ActorOption = None,
    reason: ReasonOption = "paused by operator",
    store: StoreOption = None,
) -> None:
    """Stop assigning the release."""
    _transition(campaign_id, store, "pause", actor, reason)


@campaign_app.command()
def resume(
    campaign_id: str,
    actor: ActorOption = None,
    reason: ReasonOption = "resumed by operator",
    waive_power_gate: Annotated[
        bool,
        typer.Option(
            "--waive-power-gate",
            help="Release the next wave without the power the gate waits for (this wave only).",
        ),
    ] = False,
    store: StoreOption = None,
) -> None:
    """Resume a paused or halted campaign (a power-gate pause: soak on, or waive the gate)."""
    _transition(campaign_id, store, "resume", actor, reason, waive_power_gate=waive_power_gate)


@campaign_app.command()
def cancel(
    campaign_id: str,
    actor: ActorOption = None,
    reason: ReasonOption = "cancelled by operator",
    store: StoreOption = None,
) -> None:
    """End the campaign; nothing more is assigned."""
    _transition(campaign_id, store, "cancel", actor, reason)


@campaign_app.command()
def rollback(
    campaign_id: str,
    actor: ActorOption = None,
    reason: ReasonOption = "rolled back by operator",
    store: StoreOption = None,
) -> None:
    """Assign the previous image to every ECU that installed the release."""
    _transition(campaign_id, store, "rollback", actor, reason)


@campaign_app.command("simulate")
def simulate_cmd(
    release: BehaviourOption = "faulty-dtc",
    vehicles: Annotated[int, typer.Option(help="Fleet size.")] = 10_000,
    days: Annotated[int, typer.Option(help="Longest campaign, days.")] = 40,
    seed: Annotated[int, typer.Option()] = 0,
    plot: Annotated[Path | None, typer.Option(help="Per-wave signal rates → PNG.")] = Path(
        "rollout.png"
    ),
) -> None:
    """Run a campaign wave by wave on a simulated fleet; report where it halted."""
    from fleetops.ota.rollout.release_model import ReleaseBehaviour
    from fleetops.ota.rollout.rollout_sim import plot_rollout, simulate_rollout

    with errors():
        behaviour = ReleaseBehaviour.load(release)
        console.print(f"simulating {behaviour.name} on {vehicles} vehicles …")
        result = simulate_rollout(behaviour, vehicles=vehicles, days=days, seed=seed)
        out.print_json(orjson.dumps(result.summary()).decode())
        if result.campaign is not None:
            for t in result.campaign.transitions:
                if t["actor"] == "power-gate" or t["to"] == "halted":
                    out.print(f"{t['time']} {t['to']}: {t['reason']}")
        if plot is not None:
            plot_rollout(result, str(plot))
            console.print(f"plot: {plot}")


@campaign_app.command("test-release")
def test_release_cmd(
    release: BehaviourOption = "clean",
    vehicles: Annotated[int, typer.Option(help="Simulated vehicles.")] = 150,
    days: Annotated[int, typer.Option(help="Simulated days.")] = 4,
    seed: Annotated[int, typer.Option()] = 1,
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="Record the verdict on this campaign.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Virtual-fleet test: run the release on the digital twin; exit 4 if it is blocked."""
    from fleetops.ota.rollout.release_model import ReleaseBehaviour
    from fleetops.ota.rollout.store import CampaignStore
    from fleetops.ota.rollout.virtual_fleet import test_release

    with errors():
        if vehicles < 10 or days < 1:
            raise ValidationError("test on at least 10 vehicles for at least a day")
        behaviour = ReleaseBehaviour.load(release)
        st = CampaignStore(store)
        target = st.load(campaign) if campaign else None
        result = test_release(behaviour, vehicles=vehicles, days=days, seed=seed)
        view = Table(title=f"virtual-fleet test of {behaviour.name}: {result.verdict}")
        for col in (
            "signal",
            "baseline",
            "release",
            "exposure",
            "p-value",
            "threshold",
            "regressed",
        ):
            view.add_column(col)
        for r in result.signals:
            view.add_row(
                r["signal"],
                f"{r['baseline_count']:g}",
                f"{r['release_count']:g}",
                f"{r['exposure']:g} {r['unit']}",
                f"{r['p_value']:.3g}",
                f"{r['threshold']:.3g}",
                "yes" if r["significant"] else "no",
            )
        out.print(view)
        out.print(f"{result.verdict}: {result.reason}")
        if target is not None:
            target.virtual_test = result.to_dict()
            st.save(target)
        if result.blocked:
            raise typer.Exit(4)

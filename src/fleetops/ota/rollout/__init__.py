"""OTA rollout: campaigns in waves, automatic halt, virtual-fleet testing, the SOC loop.

>>> campaign = Campaign.create("BMS 3.1", release, CohortSpec.of(ecu="BMS"), veh, ecus)  # doctest: +SKIP
>>> campaign.start("alice", "CAB-1234 approved")                                      # doctest: +SKIP
>>> campaign.assignment(vin, serial, "AUR-BMS-B", "AUR-BMS-B-3.0.0.bin")               # doctest: +SKIP

Submodules load on first use (PEP 562), so mounting the CLI costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetops.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from fleetops.ota.rollout.bench import bench_rows
    from fleetops.ota.rollout.campaign import (
        DEFAULT_WAVES,
        Campaign,
        Image,
        Release,
        State,
        TransitionError,
        Wave,
        waves_from_shares,
    )
    from fleetops.ota.rollout.cohort import COHORT_FIELDS, CohortSpec, select_cohort
    from fleetops.ota.rollout.health import HaltPolicy, HealthReport, SignalResult
    from fleetops.ota.rollout.release_model import PRESETS, CanEffect, ReleaseBehaviour
    from fleetops.ota.rollout.rollout_sim import BaselineRates, RolloutResult, simulate_rollout
    from fleetops.ota.rollout.soc import halt_findings, link_findings_to_campaigns
    from fleetops.ota.rollout.store import CampaignStore
    from fleetops.ota.rollout.virtual_fleet import VirtualTestResult, test_release

_HOME = {
    "bench_rows": "fleetops.ota.rollout.bench",
    "DEFAULT_WAVES": "fleetops.ota.rollout.campaign",
    "Campaign": "fleetops.ota.rollout.campaign",
    "Image": "fleetops.ota.rollout.campaign",
    "Release": "fleetops.ota.rollout.campaign",
    "State": "fleetops.ota.rollout.campaign",
    "TransitionError": "fleetops.ota.rollout.campaign",
    "Wave": "fleetops.ota.rollout.campaign",
    "waves_from_shares": "fleetops.ota.rollout.campaign",
    "COHORT_FIELDS": "fleetops.ota.rollout.cohort",
    "CohortSpec": "fleetops.ota.rollout.cohort",
    "select_cohort": "fleetops.ota.rollout.cohort",
    "HaltPolicy": "fleetops.ota.rollout.health",
    "HealthReport": "fleetops.ota.rollout.health",
    "SignalResult": "fleetops.ota.rollout.health",
    "PRESETS": "fleetops.ota.rollout.release_model",
    "CanEffect": "fleetops.ota.rollout.release_model",
    "ReleaseBehaviour": "fleetops.ota.rollout.release_model",
    "BaselineRates": "fleetops.ota.rollout.rollout_sim",
    "RolloutResult": "fleetops.ota.rollout.rollout_sim",
    "simulate_rollout": "fleetops.ota.rollout.rollout_sim",
    "halt_findings": "fleetops.ota.rollout.soc",
    "link_findings_to_campaigns": "fleetops.ota.rollout.soc",
    "CampaignStore": "fleetops.ota.rollout.store",
    "VirtualTestResult": "fleetops.ota.rollout.virtual_fleet",
    "test_release": "fleetops.ota.rollout.virtual_fleet",
}


__getattr__ = lazy_getattr(__name__, _HOME)


__all__ = [
    "COHORT_FIELDS",
    "DEFAULT_WAVES",
    "PRESETS",
    "BaselineRates",
    "Campaign",
    "CampaignStore",
    "CanEffect",
    "CohortSpec",
    "HaltPolicy",
    "HealthReport",
    "Image",
    "Release",
    "ReleaseBehaviour",
    "RolloutResult",
    "SignalResult",
    "State",
    "TransitionError",
    "VirtualTestResult",
    "Wave",
    "bench_rows",
    "halt_findings",
    "link_findings_to_campaigns",
    "select_cohort",
    "simulate_rollout",
    "test_release",
    "waves_from_shares",
]

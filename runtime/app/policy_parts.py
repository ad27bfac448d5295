"""Phase 2 of the composition root for the policy: its services, each with typed arguments.

The retention sweeper, gallery watcher and match recorder; the security incident
responder (and the enclosure tamper input); the two-signature remote teardown;
the licence's services.
"""

from __future__ import annotations

from ...drivers.gpio import GpioDriver
from ...handlers.door import DoorController
from ...policy import Policy
from ...policy.incidents import IncidentResponder, TamperInput
from ...policy.licence.manager import LicenceManager
from ...policy.licence.report import LicenceReporter
from ...policy.licence.seat_client import SeatClient
from ...policy.remote_destroy import DecommissionLink, RemoteDestroy
from ...policy.retention import RetentionSweeper
from ...policy.services import MatchRecorder
from ...policy.teardown import destroy
from ...policy.watch import GalleryWatcher
from ...storage import kek_source_from_config
from ..bus import EventBus
from ..clock import Clock
from ..config import DeviceConfig
from ..mqtt import MqttLink
from ..service import Service


def policy_services(policy: Policy, *, clock: Clock, bus: EventBus) -> list[Service]:
    """The retention sweeper, the gallery watcher and the match recorder."""
    return [
        RetentionSweeper(policy, clock=clock),
        GalleryWatcher(policy, clock=clock),
        MatchRecorder(policy, bus),
    ]


def incident_services(
    cfg: DeviceConfig, policy: Policy, *, bus: EventBus, clock: Clock, door: DoorController, gpio: GpioDriver
) -> list[Service]:
    """The incident responder (notify, lockdown, shred_kek) and, with a tamper line, the tamper input."""
    kek = kek_source_from_config(cfg.storage)

    async def shred(incident_id: str) -> None:
        await destroy(policy, actor=f"incident:{incident_id}", kek=kek)

    services: list[Service] = [
        IncidentResponder(policy, bus, clock, rules=dict(cfg.privacy.incidents), door=door, shred=shred)
    ]
    if cfg.gpio.tamper_line is not None:
        services.append(
            TamperInput(bus, clock, gpio, line=cfg.gpio.tamper_line, open_high=cfg.gpio.tamper_open_high)
        )
    return services


def remote_destroy(cfg: DeviceConfig, policy: Policy, link: DecommissionLink | None) -> RemoteDestroy:
    """The two-signature remote ``destroy`` verb's part."""
    return RemoteDestroy(
        policy,
        device_id=cfg.device.id,
        operators=cfg.commands.operators,
        kek=kek_source_from_config(cfg.storage),
        link=link,
    )


def licence_services(lic: LicenceManager, link: MqttLink, *, clock: Clock) -> list[Service]:
    """The periodic check, the retained ``licence`` topic and, with a seat service, the lease."""
    services: list[Service] = [lic, LicenceReporter(lic, link, clock=clock)]
    if lic.cfg.seat_service:
        services.append(SeatClient(lic, link, clock=clock))
    return services

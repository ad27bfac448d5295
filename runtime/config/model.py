"""The whole device configuration: one frozen object built once at load."""

from __future__ import annotations

from dataclasses import dataclass

from ._fields import FieldError, setting
from .access import AccessSection
from .core import DeviceSection, LifecycleSection, LoggingSection, MqttSection
from .gpio import GpioSection
from .hardware import CameraSection
from .licence import LicenceSection
from .link import CommandsSection, EventsSection, HomeAssistantSection
from .privacy import PrivacySection
from .recognition import RecognitionSection
from .storage import StorageSection


@dataclass(frozen=True)
class DeviceConfig:
    """Every section of a facegate firmware config file."""

    device: DeviceSection = setting(doc="Device identity.")
    mqtt: MqttSection = setting(factory=MqttSection, doc="Broker connection.")
    logging: LoggingSection = setting(factory=LoggingSection, doc="Structured logging.")
    lifecycle: LifecycleSection = setting(factory=LifecycleSection, doc="Start-up and shutdown.")
    camera: CameraSection = setting(factory=CameraSection, doc="Colour camera.")
    gpio: GpioSection = setting(factory=GpioSection, doc="Relay and door inputs.")
    recognition: RecognitionSection = setting(factory=RecognitionSection, doc="Face pipeline.")
    storage: StorageSection = setting(factory=StorageSection, doc="Encrypted store.")
    privacy: PrivacySection = setting(factory=PrivacySection, doc="Consent and retention.")
    events: EventsSection = setting(factory=EventsSection, doc="Event payload content.")
    commands: CommandsSection = setting(factory=CommandsSection, doc="Signed operator commands.")
    homeassistant: HomeAssistantSection = setting(
        factory=HomeAssistantSection, doc="Home Assistant MQTT discovery."
    )
    access: AccessSection = setting(
        factory=AccessSection, doc="Authorisation: validity dates and schedules (docs/gate.md)."
    )
    licence: LicenceSection = setting(factory=LicenceSection, doc="Device-bound licence.")

    def check(self) -> None:
        if self.recognition.enabled and not self.storage.enabled:
            raise FieldError("recognition.enabled", "recognition needs [storage] enabled (the gallery)")
        if self.licence.enabled and not self.storage.enabled:
            raise FieldError("licence.enabled", "the licence needs [storage] enabled (clock, install id)")

"""The topic contract ``<prefix>/<device_id>/...`` (see docs/mqtt.md).

Every topic the device publishes is built here, so a typo cannot invent a
new topic and a suffix cannot escape the device's own subtree.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MqttTopicError

STATUS = "status"
TELEMETRY = "telemetry"


def check_suffix(suffix: str) -> str:
    """Validate a publish topic suffix such as ``event/access``; return it unchanged.

    Raises MqttTopicError for empty levels, wildcards, a leading '$' or NUL.
    """
    if not suffix or suffix.startswith("$"):
        raise MqttTopicError(f"invalid topic suffix {suffix!r}")
    for level in suffix.split("/"):
        if not level or any(c in level for c in "#+\0"):
            raise MqttTopicError(f"invalid topic suffix {suffix!r}: bad level {level!r}")
    return suffix


def check_topic(topic: str) -> str:
    """Validate a full publish topic (no wildcards, no empty string, no NUL)."""
    if not topic or any(c in topic for c in "#+\0") or len(topic.encode("utf-8")) > 65535:
        raise MqttTopicError(f"invalid publish topic {topic!r}")
    return topic


def check_filter(topic_filter: str) -> str:
    """Validate a subscription filter: '#' only as the last level, '+' only as a whole level."""
    if not topic_filter or "\0" in topic_filter:
        raise MqttTopicError(f"invalid topic filter {topic_filter!r}")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise MqttTopicError(f"invalid topic filter {topic_filter!r}: misplaced '#'")
        if "+" in level and level != "+":
            raise MqttTopicError(f"invalid topic filter {topic_filter!r}: misplaced '+'")
    return topic_filter


def filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching ('+' one level, '#' the rest; '$' topics need an explicit first level)."""
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    if topic.startswith("$") and f_levels[0] in {"+", "#"}:
        return False
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f not in {"+", t_levels[i]}:
            return False
    return len(f_levels) == len(t_levels)


@dataclass(frozen=True, slots=True)
class DeviceTopics:
    """Topics of one device under one prefix."""

    prefix: str
    device_id: str

    @property
    def base(self) -> str:
        """``<prefix>/<device_id>``."""
        return f"{self.prefix}/{self.device_id}"

    @property
    def status(self) -> str:
        """Retained birth / last-will topic."""
        return f"{self.base}/{STATUS}"

    @property
    def telemetry(self) -> str:
        """Periodic health snapshot topic."""
        return f"{self.base}/{TELEMETRY}"

    def topic(self, suffix: str) -> str:
        """``<prefix>/<device_id>/<suffix>`` after validating ``suffix``."""
        return f"{self.base}/{check_suffix(suffix)}"

"""Reply handling of ``facegate cmd``: where replies go and which ones to believe (issue 10.9).

A reply is accepted only when it matches the request: the correlation (MQTT 5
correlation data, or the body's ``correlation_id`` under 3.1.1), the device id
and the verb. Anything else on the reply topic (a spoofed or stale reply) is
ignored, so a stranger cannot make ``facegate cmd`` print ``ok``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from typing import Any

import aiomqtt

Verify = Callable[[dict[str, Any], bytes], bool]
"""(reply body, correlation bytes) -> signature valid."""


class NoReply(Exception):
    """The reply stream ended without a matching reply."""


_LEVEL = re.compile(r"[^A-Za-z0-9_.-]")


def reply_topic_for(prefix: str, device: str, username: str | None) -> str:
    """``<prefix>/<device>/reply/<account>/<random>``: the device's own reply subtree."""
    account = _LEVEL.sub("_", username) if username else "cli"
    return f"{prefix}/{device}/reply/{account}/{secrets.token_hex(6)}"


def matches(body: object, props_corr: bytes | None, *, device: str, verb: str, correlation: str) -> bool:
    """True when ``body`` answers the request (correlation, device and verb all agree)."""
    if not isinstance(body, dict):
        return False
    corr = props_corr.decode("utf-8", "replace") if props_corr is not None else body.get("correlation_id")
    if corr != correlation or body.get("device_id") != device:
        return False
    # A refusal of an unparseable command carries no verb; it can only be a failure.
    return body.get("verb") == verb or (body.get("verb") is None and body.get("ok") is False)


async def expect_reply(
    client: aiomqtt.Client,
    *,
    device: str,
    verb: str,
    correlation: str,
    verify: Verify | None = None,
    forged: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The first message that :func:`matches` (and passes ``verify``); others are skipped.

    A matching reply whose device signature does not verify is appended to
    ``forged`` and skipped (a spoofer cannot answer for the device). Raises NoReply.
    """
    async for m in client.messages:
        raw = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
        try:
            body = json.loads(raw)
        except ValueError:
            continue
        props_corr = getattr(m.properties, "CorrelationData", None) if m.properties is not None else None
        if matches(body, props_corr, device=device, verb=verb, correlation=correlation):
            assert isinstance(body, dict)
            if verify is not None and not verify(body, correlation.encode("utf-8")):
                if forged is not None:
                    forged.append(body)
                continue
            return body
    raise NoReply

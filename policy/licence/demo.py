"""The demo's licence: a throw-away demo vendor key issues a valid licence on the fly.

The simulated device runs in ``app`` mode (it reads no hardware identifier of the machine it
runs on); its install id lives in the demo's throw-away store.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...runtime.bus import EventBus
from ...runtime.clock import SystemClock
from ...runtime.config import LoadedConfig
from .document import issue_test_licence, public_bytes
from .manager import LicenceManager

FEATURES = {"max_subjects": 100, "max_cameras": 2, "liveness_model": "heuristic"}


async def issue_demo_licence(loaded: LoadedConfig, workdir: Path) -> LoadedConfig:
    """Turn the licence on with a fresh demo vendor key and install a licence it signs."""
    from ...storage import Store  # noqa: PLC0415  # storage loads on use

    vendor = Ed25519PrivateKey.generate()
    cfg = loaded.config
    section = dataclasses.replace(
        cfg.licence,
        enabled=True,
        deployment="app",
        vendor_keys={"demo": base64.b64encode(public_bytes(vendor)).decode()},
        file=workdir / "demo.licence",
    )
    out = dataclasses.replace(loaded, config=dataclasses.replace(cfg, licence=section))
    clock = SystemClock()
    store = Store.from_config(out.config.storage, clock=clock)
    async with store, LicenceManager(section, store=store, bus=EventBus(), clock=clock) as manager:
        blob = issue_test_licence(
            vendor, manager.fingerprint.value, now=clock.wall(), days=30, features=FEATURES, kind="install"
        )
        await manager.install(blob)
    return out


def describe_licence(body: dict[str, Any]) -> str:
    """One line for the retained ``licence`` topic (ids and numbers only)."""
    parts = [str(body.get("state", "?")).upper()]
    for key in ("licence_id", "binding", "expires", "days_left"):
        if body.get(key) is not None:
            parts.append(f"{key}={body[key]}")
    features = body.get("features") or {}
    if features:
        parts.append("features=" + ",".join(f"{k}:{v}" for k, v in sorted(features.items())))
    fp = str(body.get("fingerprint", ""))
    if fp:
        parts.append(f"fingerprint={fp[:12]}...")
    return " ".join(parts)

"""``facegate cmd VERB``: sign and send a command, print the reply; ``facegate operator keygen``.

The operator key file is an Ed25519 private key in PKCS#8 PEM (mode 0600),
made by ``facegate operator keygen NAME``, which also prints the line to add
under ``[commands.operators]`` of each device that should accept it.
MQTT 5 replies come back on a response topic with correlation data; with
``--protocol 3.1.1`` the command carries ``reply_to``/``correlation_id``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ....handlers.commands import VERBS, envelope
from ....handlers.commands.reply_sig import verify_reply
from . import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from ._broker_opts import BrokerOptions, add_broker_options, broker_options
from ._device_key import resolve_device_key
from ._replies import NoReply, expect_reply, reply_topic_for


def register(sub: Any) -> None:
    """Add ``cmd`` and ``operator``."""
    p = sub.add_parser("cmd", help="sign and send a command to a device, print its reply")
    p.add_argument("verb", choices=VERBS, help="command verb")
    p.add_argument("--key", type=Path, help="operator private key (PEM); not needed for ping")
    p.add_argument("--operator", help="operator name (default: key file name without extension)")
    p.add_argument("--device", default="gate-1", help="device id")
    p.add_argument("--prefix", default="facegate/v1", help="topic prefix")
    p.add_argument(
        "--json",
        dest="args",
        default="{}",
        help="verb arguments as a JSON object, or @FILE to read it from FILE",
    )
    p.add_argument("--protocol", choices=["5", "3.1.1"], default="5", help="MQTT protocol")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply")
    p.add_argument(
        "--device-key",
        help="device Ed25519 public key (base64, or a file; env FACEGATE_DEVICE_KEY): replies must be "
        "signed with it ('facegate subjects public-key' on the device prints it)",
    )
    p.add_argument(
        "--known-devices",
        type=Path,
        help="JSON file of pinned device keys (env FACEGATE_KNOWN_DEVICES); a given key is pinned there",
    )
    add_broker_options(p)
    p.set_defaults(handler=_cmd)
    op = sub.add_parser("operator", help="operator key pairs for signed commands")
    ops = op.add_subparsers(dest="operator_command", metavar="ACTION", required=True)
    gen = ops.add_parser("keygen", help="create an operator key pair")
    gen.add_argument("name", help="operator name ([a-z0-9][a-z0-9_.-]*)")
    gen.add_argument("--out", type=Path, help="private key file (default NAME.key)")
    gen.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    out: Path = args.out or Path(f"{args.name}.key")
    if out.exists():
        print(f"facegate: {out} exists; refusing to overwrite", file=sys.stderr)
        return EXIT_USAGE
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    print(f"private key written to {out} (keep it secret)")
    print("add to the device config:")
    print(f'[commands.operators]\n{args.name} = "{pub}"')
    return EXIT_OK


def load_key(path: Path) -> Ed25519PrivateKey:
    """Read an operator key file; raises ValueError when it is not an Ed25519 PEM key."""
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")  # noqa: TRY004  # reported as a usage error
    return key


def _object(text: str) -> dict[str, Any]:
    if text.startswith("@"):  # a typical enrolment photo does not fit on a command line
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--json {text}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--json is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("--json must be a JSON object")  # noqa: TRY004  # reported as a usage error
    return value


def _cmd(args: argparse.Namespace) -> int:
    try:
        cmd_args = _object(args.args)
        broker = broker_options(args)
        key = load_key(args.key) if args.key is not None else None
        device_key = resolve_device_key(
            args.device_key, args.known_devices, prefix=args.prefix, device=args.device
        )
    except (ValueError, OSError) as exc:
        print(f"facegate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if key is None and args.verb != "ping":
        print("facegate: every verb but ping needs --key", file=sys.stderr)
        return EXIT_USAGE
    operator = args.operator or (args.key.stem if args.key is not None else None)
    if device_key is None:
        print(
            "facegate: warning: reply signature not checked (no device key: --device-key, "
            "FACEGATE_DEVICE_KEY or --known-devices)",
            file=sys.stderr,
        )
    forged: list[dict[str, Any]] = []
    try:
        reply = asyncio.run(
            _send(args, broker, cmd_args, key=key, operator=operator, device_key=device_key, forged=forged)
        )
    except aiomqtt.MqttError as exc:
        print(f"facegate: no reply: broker {broker.host}:{broker.port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (NoReply, TimeoutError):
        if forged:
            print(
                f"facegate: rejected {len(forged)} reply(ies) for device {args.device!r} whose signature "
                "does not verify with the device key (spoofed or another key)",
                file=sys.stderr,
            )
        print(
            f"facegate: no reply from device {args.device!r} within {args.timeout:g} s "
            "(is it online, and may this account read its reply topic?)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(json.dumps(reply, indent=2, sort_keys=True))
    return EXIT_OK if reply.get("ok") else EXIT_FAILURE


async def _send(
    args: argparse.Namespace,
    broker: BrokerOptions,
    cmd_args: dict[str, Any],
    *,
    key: Ed25519PrivateKey | None,
    operator: str | None,
    device_key: bytes | None = None,
    forged: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    v5 = args.protocol == "5"
    client_id = f"facegate-cmd-{secrets.token_hex(4)}"
    # Inside the device's own reply subtree: the documented ACL lets only that device
    # write it and only this account read it (docs/deployment.md).
    reply_topic = reply_topic_for(args.prefix, args.device, broker.username)
    correlation = secrets.token_hex(8)
    env = envelope.build(
        args.verb,
        cmd_args,
        device_id=args.device,
        ts_ms=int(time.time() * 1000),
        operator=operator,
        key=key,
        reply_to=None if v5 else reply_topic,
        correlation_id=None if v5 else correlation,
    )
    props = None
    if v5:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho leaves __init__ unannotated
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation.encode()
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        **broker.client_kwargs(),
    ) as client:
        await client.subscribe(reply_topic, qos=1)
        await client.publish(
            f"{args.prefix}/{args.device}/cmd/{args.verb}", envelope.encode(env), qos=1, properties=props
        )
        async with asyncio.timeout(args.timeout):
            verify = None
            if device_key is not None:
                pub = device_key

                def verify(body: dict[str, Any], corr: bytes) -> bool:
                    return verify_reply(body, corr, pub)

            return await expect_reply(
                client,
                device=args.device,
                verb=args.verb,
                correlation=correlation,
                verify=verify,
                forged=forged,
            )

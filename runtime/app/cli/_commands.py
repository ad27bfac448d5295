"""The table of ``facegate`` sub-commands: name -> (module, one-line help).

Only this table is read to build ``facegate --help``; a command's own module
(which may import cv2, onnxruntime, amqtt, ...) is imported only when that
command is run or asked for its ``--help``. ``tests/runtime/test_cli_lazy.py``
keeps the table equal to what the modules register.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    """Where a sub-command lives and what ``facegate --help`` says about it."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "audit": Command("audit_cmd", "inspect the tamper-evident audit log"),
    "bench": Command("bench_cmd", "benchmark the face pipeline and the 1:N matcher"),
    "calibrate": Command("calibrate_cmd", "measure the recogniser on a labelled folder (DIR/person/*.jpg)"),
    "cmd": Command("cmd_cmd", "sign and send a command to a device, print its reply"),
    "config": Command("config_cmd", "validate or document firmware config files"),
    "demo": Command(
        "demo_cmd", "run the recognition story on a simulated device and print what it publishes"
    ),
    "destroy": Command("destroy_cmd", "crypto-shred and delete every subject, the keys and the KEK"),
    "enroll": Command("enroll_cmd", "enrol faces from a folder of person_id/*.jpg"),
    "fleet": Command("fleet_cmd", "watch the devices on a broker"),
    "gpio": Command("gpio_cmd", "GPIO helpers (safe state after the service stopped)"),
    "keys": Command("keys_cmd", "create, check or rotate the storage key-encryption key"),
    "licence": Command("licence_cmd", "device-bound licence: fingerprint, issue, install, status, seats"),
    "operator": Command("cmd_cmd", "operator key pairs for signed commands"),
    "run": Command("run_cmd", "run the device from a firmware config file"),
    "simulate": Command(
        "simulate_cmd", "run a fleet of simulated devices on a broker (scripted faces and doors)"
    ),
    "subjects": Command(
        "subjects_cmd", "consent, export, rectification and erasure of enrolled people"
    ),
    "version": Command("version_cmd", "print the software version"),
}

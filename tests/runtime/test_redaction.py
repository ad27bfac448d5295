"""Log redaction through real structlog calls configured by configure_logging().

Embeddings (numpy arrays and lists), image bytes, names, passwords, registered
secrets and exceptions carrying secrets are fed to real log calls; none may
reach the rendered output, in JSON or console format, nor via stdlib logging.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import structlog
from facegate.runtime.logs import configure_logging, register_secret

from .util import MINIMAL, CapturedLogs, load_text

SECRET = "Sup3r-Secret-Token-9f27"
PASSWORD = "hunter2-correct-horse"
NAME = "Alice Quintessa Example"


@pytest.fixture(params=["json", "console"])
def out(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(device_id="gate-1", level="debug", fmt=request.param, stream=stream)
    yield stream
    CapturedLogs.reset()


def _embedding() -> np.ndarray:
    rng = np.random.default_rng(42)
    vec = rng.standard_normal(128).astype(np.float32)
    return vec / np.linalg.norm(vec)


def _leaks(text: str, emb: np.ndarray) -> list[str]:
    needles = [SECRET, PASSWORD, NAME, "Quintessa", "JFIF"]
    # Any element of the embedding printed with 4+ significant digits is a leak.
    needles += [repr(float(v))[:7] for v in emb[:16] if abs(float(v)) > 0.01]
    return [n for n in needles if n in text]


def test_personal_and_secret_values_never_reach_output(out: io.StringIO) -> None:
    register_secret(SECRET)
    emb = _embedding()
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256))
    log = structlog.get_logger("facegate.test")
    log.info("enrol", embedding=emb)
    log.info("enrol", embedding_list=emb.tolist())
    log.info("match", probe=emb, vec=emb.tolist())  # innocuous keys: still arrays/number lists
    log.info("capture", image=jpeg, crop=jpeg, data=bytearray(jpeg))
    log.info("subject", name=NAME, display_name=NAME, subject={"full": {"name": NAME}})
    log.warning("auth", password=PASSWORD, mqtt_password=PASSWORD, token=SECRET)
    log.error("connect failed", detail=f"broker refused credentials {SECRET}")
    log.info(f"free text mentioning {SECRET}")  # the event string itself
    try:
        raise ConnectionError(f"auth failed for token {SECRET}")
    except ConnectionError:
        log.exception("link.crash")
    try:
        raise ValueError(f"bad secret {SECRET}")
    except ValueError as exc:
        log.error("link.crash2", exc_info=exc)
    text = out.getvalue()
    assert text.count("\n") >= 10, text  # every call produced a line
    assert _leaks(text, emb) == [], text
    assert "[redacted" in text
    assert "gate-1" in text  # every line carries the device id


def test_stdlib_logging_is_redacted_too(out: io.StringIO) -> None:
    register_secret(SECRET)
    # A library logger name of our own: other tests may silence amqtt/paho loggers.
    logging.getLogger("facegate_test_library").warning("client sent password %s", SECRET)
    text = out.getvalue()
    assert "client sent password" in text
    assert SECRET not in text


def test_secret_loaded_from_config_is_registered(tmp_path: Path, out: io.StringIO) -> None:
    (tmp_path / "pw").write_text("cfg-loaded-pw-4711\n")
    loaded = load_text(tmp_path, MINIMAL + '[mqtt]\nusername = "u"\npassword = { file = "pw" }\n')
    assert loaded.config.mqtt.password is not None
    structlog.get_logger("facegate.test").info(
        "oops", detail=f"using {loaded.config.mqtt.password.reveal()}", cfg=repr(loaded.config)
    )
    assert "cfg-loaded-pw-4711" not in out.getvalue()


def test_counts_and_ids_are_kept(out: io.StringIO) -> None:
    structlog.get_logger("facegate.test").info(
        "gallery", template_count=12, subject_id="s-0001", frames_dropped=3
    )
    text = out.getvalue()
    assert "s-0001" in text and "12" in text and "frames_dropped" in text

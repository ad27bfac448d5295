"""Config validation: every rule gives a typed ConfigError naming the file and the key path."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from facegate.runtime.app.cli import main
from facegate.runtime.config import (
    ConfigError,
    DeviceConfig,
    SecretRef,
    example_toml,
    load_config,
    render_effective,
)

from .util import MINIMAL, load_text, write_config

REPO = Path(__file__).resolve().parents[2]


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    err = info.value
    assert str(err).startswith(str(tmp_path / "device.toml")), "error must name the file"
    return err


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[devcie]\nid = "a"\n', "devcie", "unknown key"),
        (MINIMAL + "[mqtt]\nprot = 1883\n", "mqtt.prot", "unknown key"),
        (MINIMAL + '[mqtt.tls]\nca = "x"\n', "mqtt.tls.ca", "unknown key"),
        (MINIMAL + "[gpio]\nrelay_lines = 3\n", "gpio.relay_lines", "unknown key"),
        (MINIMAL + '[mqtt]\nport = "1883"\n', "mqtt.port", "expected an integer"),
        (MINIMAL + "[gpio]\nrelock_on_close = 1\n", "gpio.relock_on_close", "true or false"),
        (MINIMAL + "[gpio]\nrelay_active_high = true\n", "gpio.relay_active_high", "lock_type"),
        (MINIMAL + '[gpio]\nsafe_state = "locked"\n', "gpio.safe_state", "no longer supported"),
        (MINIMAL + '[gpio]\nlock_type = "maglock"\n', "gpio.lock_type", "must be one of"),
        (MINIMAL + "[gpio]\nunlock_s = 0.5\n", "gpio.unlock_s", "must be >= 1"),
        (MINIMAL + "[gpio]\nunlock_s = 256\n", "gpio.unlock_s", "must be <= 255"),
        (MINIMAL + "[gpio]\ninput_min_pulse_ms = 401\n", "gpio.input_min_pulse_ms", "<= 400"),
        (
            MINIMAL + '[gpio]\nfire_line = 5\nfire_reset = "input"\n',
            "gpio.fire_reset_line",
            "needs a fire_reset_line",
        ),
        (MINIMAL + '[mqtt]\nbroker = "cloud"\n', "mqtt.broker", "must be one of"),
        ("mqtt = 3\n" + MINIMAL, "mqtt", "expected a table"),
        (MINIMAL + "[mqtt]\nport = 0\n", "mqtt.port", "must be >= 1"),
        (MINIMAL + "[mqtt]\nport = 70000\n", "mqtt.port", "must be <= 65535"),
        (MINIMAL + "[gpio]\nunlock_s = nan\n", "gpio.unlock_s", "expected a finite number"),
        (MINIMAL + "[gpio]\nheld_open_s = inf\n", "gpio.held_open_s", "expected a finite number"),
        (
            MINIMAL + "[lifecycle]\nshutdown_grace_s = nan\n",
            "lifecycle.shutdown_grace_s",
            "expected a finite number",
        ),
        (MINIMAL + "[lifecycle]\nshutdown_grace_s = -1\n", "lifecycle.shutdown_grace_s", "> 0"),
        ('[device]\nsite = "x"\n', "device.id", "is required"),
        ('[device]\nid = "Gate 1"\n', "device.id", "not a valid device id"),
        (
            MINIMAL + "[mqtt]\nreconnect_min_s = 5.0\nreconnect_max_s = 1.0\n",
            "mqtt.reconnect_max_s",
            "must be >= reconnect_min_s",
        ),
        (
            MINIMAL + "[lifecycle]\nrestart_min_s = 5.0\nrestart_max_s = 1.0\n",
            "lifecycle.restart_max_s",
            "must be >= restart_min_s",
        ),
        (MINIMAL + "[gpio]\nrelay_line = 4\ndoor_sensor_line = 4\n", "gpio.relay_line", "distinct"),
        (MINIMAL + '[mqtt]\ntopic_prefix = "a/#"\n', "mqtt.topic_prefix", "without '#'"),
        (
            MINIMAL + '[mqtt]\nbroker = "embedded"\n[mqtt.tls]\ncheck_hostname = true\n',
            "mqtt.tls",
            "embedded broker",
        ),
    ],
)
def test_each_rule_names_key_path_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    err = error_of(tmp_path, text)
    assert err.key == key
    assert reason in err.reason
    assert f": {key}: " in str(err)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[device]\nid = "a\n')
    assert err.key == ""
    assert "TOML syntax error" in err.reason


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_inline_secret_is_refused_and_not_echoed(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + '[mqtt]\nusername = "dev"\npassword = "s3cret-inline"\n')
    assert err.key == "mqtt.password"
    assert "never inline" in err.reason
    assert "s3cret-inline" not in str(err)


def test_password_needs_username(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-a-file\n")
    err = error_of(tmp_path, MINIMAL + '[mqtt]\npassword = { file = "pw" }\n')
    assert err.key == "mqtt.password"


def test_secret_from_file_is_loaded_and_masked(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("file-secret-value\n")
    loaded = load_text(
        tmp_path, MINIMAL + '[mqtt]\nusername = "dev"\npassword = { file = "pw" }\n'
    )
    assert loaded.config.mqtt.password is not None
    assert loaded.config.mqtt.password.reveal() == "file-secret-value"
    rendered = render_effective(loaded.config)
    assert "file-secret-value" not in rendered
    assert "***" in rendered
    assert "file-secret-value" not in repr(loaded.config)


def test_secret_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FG_TEST_MQTT_PW", "env-secret-value")
    loaded = load_text(
        tmp_path, MINIMAL + '[mqtt]\nusername = "dev"\npassword = { env = "FG_TEST_MQTT_PW" }\n'
    )
    assert loaded.config.mqtt.password is not None
    assert loaded.config.mqtt.password.reveal() == "env-secret-value"
    assert "env-secret-value" not in render_effective(loaded.config)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('{ env = "FG_TEST_UNSET_VAR" }', "is not set"),
        ('{ file = "nope.txt" }', "cannot read secret file"),
        ('{ file = "a", env = "B" }', "exactly one"),
        ('{ vault = "x" }', "unknown key"),
        ('{ credential = "mqtt-pw" }', "CREDENTIALS_DIRECTORY"),
    ],
)
def test_bad_secret_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.delenv("FG_TEST_UNSET_VAR", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    err = error_of(tmp_path, MINIMAL + f'[mqtt]\nusername = "dev"\npassword = {value}\n')
    assert err.key == "mqtt.password"
    assert reason in err.reason


def test_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-pw").write_text("cred-secret-value")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    loaded = load_text(
        tmp_path, MINIMAL + '[mqtt]\nusername = "dev"\npassword = { credential = "mqtt-pw" }\n'
    )
    assert loaded.config.mqtt.password is not None
    assert loaded.config.mqtt.password.reveal() == "cred-secret-value"


def test_gpiod_driver_section(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, MINIMAL + '[gpio]\ndriver = "gpiod"\nchip = "/dev/gpiochip1"\n')
    assert loaded.config.gpio.driver == "gpiod"
    assert loaded.config.gpio.chip == Path("/dev/gpiochip1")


def test_config_check_typo_exits_2_naming_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, MINIMAL + "[mqtt]\nkeepalvie = 30\n")
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "mqtt.keepalvie" in err


def test_config_check_console_script_exit_codes(tmp_path: Path) -> None:
    bad = write_config(tmp_path, MINIMAL + "[gpio]\nrelay_lien = 3\n")
    facegate = Path(sys.executable).parent / "facegate"
    proc = subprocess.run(
        [str(facegate), "config", "check", str(bad)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "gpio.relay_lien" in proc.stderr and str(bad) in proc.stderr
    good = write_config(tmp_path, MINIMAL, name="good.toml")
    proc = subprocess.run(
        [str(facegate), "config", "check", str(good)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert '"id": "gate-1"' in proc.stdout


def test_device_example_is_exactly_config_example_output() -> None:
    shipped = (REPO / "firmware-config" / "device.example.toml").read_text(encoding="utf-8")
    assert shipped == example_toml(), (
        "firmware-config/device.example.toml is stale: "
        "run `facegate config example > firmware-config/device.example.toml`"
    )


def test_demo_config_is_valid_and_simulated() -> None:
    loaded = load_config(REPO / "firmware-config" / "demo.toml")
    cfg = loaded.config
    assert cfg.mqtt.broker == "embedded"
    assert cfg.gpio.driver == "simulated" and cfg.camera.driver == "simulated"


def _sections(cls: type, prefix: str = "") -> list[tuple[str, type]]:
    found = [(prefix or "<root>", cls)]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        for arg in (typing.get_args(hints[f.name]) or (hints[f.name],)):
            if dataclasses.is_dataclass(arg) and isinstance(arg, type) and arg is not SecretRef:
                found += _sections(arg, f"{prefix}.{f.name}".lstrip("."))
    return found


def test_every_config_field_is_described() -> None:
    """Config is self-documenting: every field of every section carries a description."""
    sections = _sections(DeviceConfig)
    assert len(sections) >= 10
    undocumented = [
        f"{path}.{f.name}"
        for path, cls in sections
        for f in dataclasses.fields(cls)
        if len(str(f.metadata.get("doc", "")).strip()) < 10
    ]
    assert undocumented == []

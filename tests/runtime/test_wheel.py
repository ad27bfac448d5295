"""The wheel is the product: installed into a fresh venv outside the checkout, it runs the demo
and recognises people with its default config (package data: ranges, demo.toml, demo faces)."""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.brokers import free_port
from tests.fixtures.wheel import REPO, WheelVenv

FACES = REPO / "tests" / "data" / "faces"
DEMO_FACES = ("obama.jpg", "obama2.jpg", "biden.jpg", "Family1-Son1.jpg", "Family1-Son2.jpg",
              "Family2-Lady1.jpg", "Family2-Man1.jpg")
EVIDENCE = "sha256:" + "ab" * 32


def test_wheel_ships_what_the_default_config_and_the_demo_need(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        demo_toml = zf.read("facegate/runtime/demo/demo.toml")
        notice = zf.read("facegate/runtime/demo/faces/NOTICE.md").decode()
        faces = {n: zf.read(f"facegate/runtime/demo/faces/{n}") for n in DEMO_FACES}
    assert "facegate/drivers/models/files/sface-2021dec-int8r1-ranges.json" in names
    assert "facegate/drivers/models/files/face_detection_yunet_2023mar_int8bq.onnx" in names
    assert "facegate/drivers/models/files/face_recognition_sface_2021dec_int8bq.onnx" in names
    assert "facegate/handlers/commands/schemas" in {n.rsplit("/", 1)[0] for n in names}
    # One demo config: the packaged copy is the firmware-config file, byte for byte.
    assert demo_toml == (REPO / "firmware-config" / "demo.toml").read_bytes()
    for name, data in faces.items():
        assert data == (FACES / name).read_bytes(), name
        assert f"`{name}`" in notice, f"{name} has no licence line in faces/NOTICE.md"
    assert "MIT License" in notice


def _code_strings(source: str) -> list[str]:
    """String constants of a module that are not docstrings."""
    tree = ast.parse(source)
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_installed_code_path_resolves_the_source_tree(wheel: Path) -> None:
    offenders = []
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.endswith(".py"):
                continue
            for text in _code_strings(zf.read(name).decode()):
                if text in ("tests", "firmware-config") or text.startswith(("tests/", "firmware-config/")):
                    offenders.append(f"{name}: {text!r}")
    assert offenders == []


@pytest.mark.timeout(900)
def test_demo_from_the_installed_wheel_tells_the_whole_story(wheel_venv: WheelVenv) -> None:
    """`pip install facegate` then `facegate demo`: the story, exit 0, outside any checkout."""
    proc = wheel_venv.run("facegate", "demo", "--seconds", "40", "--port", str(free_port()), timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "[demo] enrolled emp-1001 from an image file" in out
    assert "enrolment of kid-2001 refused" in out
    assert "GRANTED reason=match subject=emp-1001" in out
    assert "DENIED reason=liveness_still" in out
    assert "[mqtt] event/security: kind=door_forced" in out
    assert "stopped (exit 0)" in out
    # The converted models went to the user cache, not into site-packages.
    assert list((wheel_venv.cache / "facegate" / "models").glob("*.onnx"))
    assert not list(wheel_venv.root.rglob("model-cache"))


@pytest.mark.timeout(900)
def test_installed_wheel_enrols_with_the_default_config(wheel_venv: WheelVenv, tmp_path: Path) -> None:
    """The bug of issue 13: `subjects enrol` failed from the wheel (no int8 ranges file)."""
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        f'[device]\nid = "gate-w"\nsite = "Wheel"\n\n[storage]\npath = "{tmp_path / "dev.db"}"\n'
        f'kek_source = "file"\nkek_file = "{tmp_path / "facegate.kek"}"\n'
    )
    face = tmp_path / "me.jpg"
    face.write_bytes((FACES / "Family1-Dad1.jpg").read_bytes())
    c = str(cfg)
    steps = [
        ("facegate", "keys", "init", "-c", c),
        ("facegate", "subjects", "age", "-c", c, "P1", "--age-band", "18_plus"),
        ("facegate", "subjects", "consent", "grant", "-c", c, "P1", "--method", "kiosk",
         "--evidence", EVIDENCE, "--activate"),
        ("facegate", "subjects", "enrol", "-c", c, "P1", "--image", str(face)),
    ]
    for argv in steps:
        proc = wheel_venv.run(*argv, timeout=240)
        assert proc.returncode == 0, f"{argv}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    assert "1 template(s)" in proc.stdout


def docs_example() -> str:
    """The complete example of docs/testing.md (the python block after its marker)."""
    text = (REPO / "docs" / "testing.md").read_text(encoding="utf-8")
    after = text.split("<!-- example: test_gate_controller.py -->", 1)[1]
    return after.split("```python\n", 1)[1].split("\n```", 1)[0] + "\n"


@pytest.mark.timeout(900)
def test_docs_testing_example_passes_in_a_new_project(wheel_venv: WheelVenv, tmp_path: Path) -> None:
    """docs/testing.md's example, copied into a folder that has only the installed wheel."""
    project = tmp_path / "gate-controller"
    project.mkdir()
    (project / "test_gate_controller.py").write_text(docs_example())
    proc = wheel_venv.run("python", "-m", "pytest", "-v", "-p", "no:cacheprovider", cwd=project, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "facegate.testing: mqtt_broker = " in out  # the plugin loaded from the entry point
    assert "3 passed" in out

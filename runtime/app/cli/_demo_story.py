"""The scripted story ``facegate demo`` plays on a simulated device.

Every step acts through the device's real parts: enrolment from image files
through the privacy policy (consent first), faces shown to the simulated
camera, the real recognition pipeline deciding, the door relay moving, and
events leaving through the durable MQTT outbox. What the story prints itself
is marked ``[demo]``; the outcome is printed by the outside MQTT subscriber.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import date

from ....drivers.camera import SimulatedCamera
from ....drivers.gpio import SimulatedGpio
from ....handlers.recognition.engine import RecognitionEngine
from ....policy import AgeBand, ConsentKind, ConsentMethod, Guardian, Policy, enrol_images
from ....policy.errors import PolicyError
from ...demo import faces_dir
from ..device import Device

Say = Callable[[str], None]

# (subject id, photo used for enrolment, birth date) of the people with consent.
ADULTS = (("emp-1001", "obama.jpg", date(1961, 8, 4)), ("emp-1002", "Family2-Lady1.jpg", date(1985, 3, 1)))
CHILD = ("kid-2001", "Family1-Son1.jpg", date(2016, 5, 5))
NO_CONSENT = ("emp-1003", "Family2-Man1.jpg")
SHOW_FRAMES = 24  # 1.6 s at the demo's 15 fps: enough for k=3 agreeing frames


def _evidence(text: str) -> str:
    # A real kiosk stores the hash of the signed consent form; the demo hashes a label.
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class Story:
    """Plays the demo scenes on ``device``; ``say`` prints narration lines."""

    def __init__(self, device: Device, say: Say) -> None:
        self.device = device
        self.say = say
        self.gpio = device.parts.gpio
        self.faces = faces_dir()

    async def play(self) -> None:
        """All scenes in order; returns when the last decision had time to arrive."""
        parts = self.device.parts
        if not isinstance(parts.camera, SimulatedCamera):
            self.say("[demo] the camera is not simulated: nothing to show")
            return
        if parts.recognition is None or parts.engine is None or parts.policy is None:
            self.say("[demo] this device has no recognition or no store: nothing to show")
            return
        self.camera: SimulatedCamera = parts.camera
        self.policy: Policy = parts.policy
        await parts.recognition.wait_ready()
        await self._enrol(parts.engine)
        await self._scene(
            "a known face, live (slight natural motion)", "obama2.jpg", jitter=True, walk_through=True
        )
        await self._scene("a face nobody enrolled", "biden.jpg", jitter=True)
        await self._scene("a frozen replay of a known face (identical frames)", "obama2.jpg", jitter=False)
        await self._scene("the enrolled child, live", "Family1-Son2.jpg", jitter=True)
        await self._withdraw("emp-1001")
        await self._scene("the withdrawn person again", "obama2.jpg", jitter=True)
        await self._forced_door()
        await self._fire_release()
        self.say("[demo] story done; the device keeps running (Ctrl-C stops it)")

    async def _enrol(self, engine: RecognitionEngine) -> None:
        self.say("[demo] enrolling sample faces from image files, consent first")
        consents = self.policy.consents
        for sid, photo, born in ADULTS:
            await self.policy.record_age(sid, actor="demo", birth_date=born)
            await consents.grant(
                subject_id=sid, kind=ConsentKind.BIOMETRIC, method=ConsentMethod.KIOSK,
                evidence_digest=_evidence(f"form:{sid}"), actor="demo", activate=True,
            )
            await self._enrol_photo(engine, sid, photo)
        sid, photo, born = CHILD
        await self.policy.record_age(sid, actor="demo", birth_date=born)
        await consents.grant(
            subject_id=sid, kind=ConsentKind.BIOMETRIC, method=ConsentMethod.PAPER,
            evidence_digest=_evidence(f"form:{sid}"), actor="demo", activate=True,
        )
        self.say(f"[demo] {sid} is under {self.device.config.privacy.minor_age}: "
                 "without a guardian's consent enrolment must be refused")
        await self._enrol_photo(engine, sid, photo)
        await consents.grant(
            subject_id=sid, kind=ConsentKind.GUARDIAN, method=ConsentMethod.PAPER,
            evidence_digest=_evidence(f"guardian:{sid}"), actor="demo", activate=True,
            guardian=Guardian(guardian_id="emp-1009", relationship="parent",
                              evidence_digest=_evidence(f"guardian-form:{sid}")),
        )
        self.say(f"[demo] guardian consent for {sid} recorded")
        await self._enrol_photo(engine, sid, photo)
        sid, photo = NO_CONSENT
        await self.policy.record_age(sid, actor="demo", age_band=AgeBand.ADULT)
        await self._enrol_photo(engine, sid, photo)

    async def _enrol_photo(self, engine: RecognitionEngine, sid: str, photo: str) -> None:
        data = (self.faces / photo).read_bytes()
        try:
            result = await enrol_images(self.policy, sid, [data], engine.embed_image, actor="demo")
        except PolicyError as exc:
            self.say(f"[demo] enrolment of {sid} refused: {exc}")
            return
        self.say(f"[demo] enrolled {sid} from an image file ({len(result.template_ids)} template(s))")

    async def _scene(self, what: str, photo: str, *, jitter: bool, walk_through: bool = False) -> None:
        self.say(f"[demo] showing the camera {what}")
        async with asyncio.TaskGroup() as tg:
            if walk_through:
                tg.create_task(self._walk_through(), name="demo.walk_through")
            await self.camera.show(self.faces / photo, frames=SHOW_FRAMES, jitter=jitter)
        # Let the track end and its decision leave through the outbox before the next scene.
        await self.device.clock.sleep(2.5)

    async def _walk_through(self) -> None:
        """Once the grant pulses the relay, the person opens the door and closes it behind them."""
        door = self.device.parts.door
        sensor = self.device.config.gpio.door_sensor_line
        if sensor is None or not isinstance(self.gpio, SimulatedGpio):
            return
        for _ in range(100):  # up to 5 s for the decision
            if door.unlocked:
                break
            await self.device.clock.sleep(0.05)
        else:
            return
        self.say("[demo] the relay is pulsed: the person opens the door and walks through")
        opened = self.device.config.gpio.door_open_high
        self.gpio.drive_input(sensor, opened)
        await self.device.clock.sleep(1.0)
        self.gpio.drive_input(sensor, not opened)

    async def _fire_release(self) -> None:
        fire = self.device.config.gpio.fire_line
        door = self.device.parts.door
        if not isinstance(self.gpio, SimulatedGpio) or fire is None:
            return
        alarm = self.device.config.gpio.fire_contact == "no"
        self.say("[demo] the fire panel trips the fire input: the GPIO driver releases the lock")
        self.gpio.drive_input(fire, alarm)
        await self.device.clock.sleep(1.5)
        self.say("[demo] the alarm clears; the lock stays released until an operator's release")
        self.gpio.drive_input(fire, not alarm)
        await self.device.clock.sleep(1.0)
        door.release("demo-operator")  # what a signed 'release' command does
        self.say("[demo] released by the operator: the lock is engaged again")
        await self.device.clock.sleep(1.0)

    async def _withdraw(self, sid: str) -> None:
        self.say(f"[demo] {sid} withdraws consent: erased, unmatchable at once")
        outcome = await self.policy.withdraw_subject(sid, actor="demo")
        unmatchable_ms = outcome.unmatchable_s * 1000
        self.say(f"[demo] {sid} unmatchable after {unmatchable_ms:.1f} ms")
        await self.device.clock.sleep(0.5)

    async def _forced_door(self) -> None:
        sensor = self.device.config.gpio.door_sensor_line
        if not isinstance(self.gpio, SimulatedGpio) or sensor is None:
            return
        self.say("[demo] someone forces the locked door open")
        opened = self.device.config.gpio.door_open_high
        self.gpio.drive_input(sensor, opened)
        await self.device.clock.sleep(1.0)
        self.gpio.drive_input(sensor, not opened)
        await self.device.clock.sleep(1.0)

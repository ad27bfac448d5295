"""``facegate enroll --from DIR``: bulk enrolment of ``DIR/<person_id>/*.jpg``.

Each sub-folder name is the person's pseudonymous subject id. Every image is
embedded by the recognition pipeline (one face, quality checks); a person's
accepted templates are stored in one durable transaction. Every skipped
image or folder is reported with its reason code. Enrolment goes through
:meth:`facegate.policy.Policy.enrol_subject`: a person without an active
biometric consent (and age record; guardian consent for a minor) in the
consent registry is skipped with ``consent_required:<missing>`` before any of
their images is processed; the registry's consent id is recorded in the
audit row of each enrolment.

Resumable and idempotent (:mod:`facegate.policy.image_files`): each template
records the keyed digest of its image, so running the same command again
(after a crash, a kill or a partial failure) enrols only what is missing. An
image a person is already enrolled from is reported ``skipped <file>: already
enrolled from this image``; an image that already enrols another person is
refused (one photo cannot enrol two people). The last line counts the images
enrolled, skipped and failed.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ....handlers.recognition import RecognitionEngine
from ....policy import Policy
from ....policy.errors import ConsentRequiredError
from ....policy.image_files import (
    ALREADY_ENROLLED_TEXT,
    ANOTHER_SUBJECT_TEXT,
    ImageStatus,
    enrol_image_files,
)
from ....policy.licence.errors import LicenceRequired
from ....policy.licence.manager import enrolment_licence
from ....storage import Store
from ....storage.enrolment import check_id
from ....storage.errors import InvalidInputError
from ...config import load_config

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


@dataclass
class EnrolSummary:
    enrolled: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    images_enrolled: int = 0
    images_already: int = 0
    """Images a person is already enrolled from (a rerun after a crash): skipped, no new template."""
    images_failed: int = 0


def register(sub: Any) -> None:
    """Add the ``enroll`` command."""
    p = sub.add_parser("enroll", help="enrol faces from a folder of person_id/*.jpg")
    p.add_argument("--from", dest="source", type=Path, required=True, help="folder of person folders")
    p.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    p.add_argument("--actor", default="cli", help="operator id recorded in the audit log")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_enroll)


def _plan(root: Path, summary: EnrolSummary) -> dict[str, list[Path]]:
    people: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        rel = entry.name
        if not entry.is_dir():
            summary.skipped.append((rel, "not_a_person_folder"))
            continue
        try:
            check_id(entry.name, "person id")
        except InvalidInputError:
            summary.skipped.append((rel + "/", "invalid_person_id"))
            continue
        images = []
        for f in sorted(entry.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                images.append(f)
            else:
                summary.skipped.append((f"{rel}/{f.name}", "not_an_image"))
        if images:
            people[entry.name] = images
        else:
            summary.skipped.append((rel + "/", "no_images"))
    return people


async def run_enrolment(  # one linear pass: licence, consent, then each person's images
    root: Path, config: Path, *, actor: str, progress: bool
) -> EnrolSummary:
    """Embed and enrol every consenting person folder under ``root``; returns what happened."""
    loaded = load_config(config)
    summary = EnrolSummary()
    people = await asyncio.to_thread(_plan, root, summary)
    total = sum(len(v) for v in people.values())
    engine = await RecognitionEngine.create(loaded.config.recognition, config_path=config)
    async with Store.from_config(loaded.config.storage) as store:
        cfg = loaded.config
        policy = await Policy(store, cfg.privacy, clock=store.clock, device_id=cfg.device.id).open()
        licence = await enrolment_licence(cfg.licence, store)  # None when [licence] is off
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar:
            task = bar.add_task("embedding images", total=total)
            for person, images in people.items():
                try:  # licence and consent first: no face of a non-consenting person is processed
                    if licence is not None:
                        await licence.admit_enrolment(person)
                    await policy.require_enrolment_consent(person)
                except LicenceRequired as exc:
                    if exc.code == "licence_required":
                        raise  # no usable licence: the whole run is refused with the reason
                    summary.skipped.append((person + "/", exc.code))
                    bar.advance(task, len(images))
                    continue
                except ConsentRequiredError as exc:
                    summary.skipped.append((person + "/", f"consent_required:{exc.missing}"))
                    bar.advance(task, len(images))
                    continue
                files: list[tuple[str, bytes]] = []
                for img in images:
                    rel = f"{person}/{img.name}"
                    try:
                        files.append((rel, await asyncio.to_thread(img.read_bytes)))
                    except OSError:
                        summary.skipped.append((rel, "unreadable"))
                        summary.images_failed += 1
                        bar.advance(task)
                if files:
                    await _enrol_person(
                        policy, engine, person, files,
                        actor=actor, summary=summary, on_image=lambda: bar.advance(task),
                    )
                else:
                    summary.skipped.append((person + "/", "no_usable_image"))
    return summary


async def _enrol_person(  # one person's part of run_enrolment
    policy: Policy,
    engine: RecognitionEngine,
    person: str,
    files: list[tuple[str, bytes]],
    *,
    actor: str,
    summary: EnrolSummary,
    on_image: Callable[[], None],
) -> None:
    """Enrol one person's images: skipped when already enrolled from them (resumable rerun)."""
    try:
        report = await enrol_image_files(policy, person, files, engine, actor=actor, on_image=on_image)
    except (InvalidInputError, ConsentRequiredError) as exc:
        summary.skipped.append((person + "/", f"refused: {exc}"))
        summary.images_failed += len(files)
        return
    for out in report.outcomes:
        if out.status is ImageStatus.ALREADY_ENROLLED:
            summary.skipped.append((out.label, ALREADY_ENROLLED_TEXT))
            summary.images_already += 1
        elif out.status is ImageStatus.ENROLS_ANOTHER_SUBJECT:
            summary.skipped.append((out.label, ANOTHER_SUBJECT_TEXT))
            summary.images_failed += 1
        elif out.status is ImageStatus.FAILED:
            summary.skipped.append((out.label, out.reason))
            summary.images_failed += 1
    summary.images_enrolled += len(report.template_ids)
    if report.template_ids:
        summary.enrolled[person] = len(report.template_ids)
    elif not report.count(ImageStatus.ALREADY_ENROLLED):
        summary.skipped.append((person + "/", "no_usable_image"))


def _enroll(args: argparse.Namespace) -> int:
    if not args.source.is_dir():
        print(f"facegate: error: {args.source} is not a folder")
        return 2
    summary = asyncio.run(
        run_enrolment(
            args.source,
            args.config,
            actor=args.actor,
            progress=not args.no_progress,
        )
    )
    console = Console(highlight=False, soft_wrap=True)  # one line per file: greppable
    n = sum(summary.enrolled.values())
    console.print(f"enrolled {len(summary.enrolled)} person(s), {n} template(s)")
    for rel, reason in summary.skipped:
        console.print(f"skipped {rel}: {reason}")
    console.print(
        f"images: {summary.images_enrolled} enrolled, {summary.images_already} skipped "
        f"({ALREADY_ENROLLED_TEXT}), {summary.images_failed} failed"
    )
    done = summary.enrolled or summary.images_already
    return 0 if done or not summary.skipped else 1

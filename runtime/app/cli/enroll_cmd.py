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
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ....handlers.recognition import ImageRejected, RecognitionEngine
from ....policy import Policy
from ....policy.errors import ConsentRequiredError
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


async def run_enrolment(  # noqa: PLR0915  # one linear pass: licence, consent, embed, enrol per person
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
                vectors = []
                model_id = engine.model_id
                for img in images:
                    rel = f"{person}/{img.name}"
                    try:
                        data = await asyncio.to_thread(img.read_bytes)
                        emb = await engine.embed_image(data)
                    except ImageRejected as exc:
                        summary.skipped.append((rel, exc.reason_code))
                    except OSError:
                        summary.skipped.append((rel, "unreadable"))
                    else:
                        vectors.append(emb.embedding)
                        model_id = emb.model_id
                    bar.advance(task)
                if not vectors:
                    summary.skipped.append((person + "/", "no_usable_image"))
                    continue
                try:
                    res = await policy.enrol_subject(person, np.stack(vectors), model_id, actor=actor)
                except (InvalidInputError, ConsentRequiredError) as exc:
                    summary.skipped.append((person + "/", f"refused: {exc}"))
                    continue
                summary.enrolled[person] = len(res.template_ids)
    return summary


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
    console = Console(highlight=False)
    n = sum(summary.enrolled.values())
    console.print(f"enrolled {len(summary.enrolled)} person(s), {n} template(s)")
    for rel, reason in summary.skipped:
        console.print(f"skipped {rel}: {reason}")
    return 0 if summary.enrolled or not summary.skipped else 1

"""Stable reason codes carried by AccessDecision, StageResult and ImageRejected.

These strings are an external contract (MQTT payloads, audit): add, never rename.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a frame, a face or an image got the result it got."""

    # decisions
    MATCH = "match"
    NO_MATCH = "no_match"
    DEADLINE = "deadline"
    TRACK_LOST = "track_lost"
    EMPTY_GALLERY = "empty_gallery"
    # liveness
    LIVENESS_STILL = "liveness_still"
    LIVENESS_IR_MISSING = "liveness_ir_missing"
    LIVENESS_PAD = "liveness_pad"
    LIVE = "live"
    PENDING = "pending"
    # quality
    OK = "ok"
    QUALITY_SMALL = "quality_small"
    QUALITY_BLUR = "quality_blur"
    QUALITY_POSE_YAW = "quality_pose_yaw"
    QUALITY_POSE_PITCH = "quality_pose_pitch"
    QUALITY_DARK = "quality_dark"
    QUALITY_BRIGHT = "quality_bright"
    # faces and images
    NO_FACE = "no_face"
    MANY_FACES = "many_faces"
    OUTSIDE_ROI = "outside_roi"
    IMAGE_EMPTY = "image_empty"
    IMAGE_CORRUPT = "image_corrupt"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_TOO_SMALL = "image_too_small"
    IMAGE_FORMAT = "image_format"

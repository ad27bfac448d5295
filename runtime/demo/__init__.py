"""Assets of ``facegate demo``, shipped inside the package (wheel data).

``demo.toml`` (the demo device: simulated camera and GPIO, embedded broker)
and the sample faces the story enrols and shows (``faces/``, licences in
``faces/NOTICE.md``). Everything is located relative to this package, so an
installed wheel needs no source tree.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def config_path() -> Path:
    """The packaged ``demo.toml``."""
    return _HERE / "demo.toml"


def faces_dir() -> Path:
    """The packaged sample faces used by the demo story (see ``faces/NOTICE.md``)."""
    return _HERE / "faces"


__all__ = ["config_path", "faces_dir"]

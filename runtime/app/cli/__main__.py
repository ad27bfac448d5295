"""``python -m facegate.runtime.app.cli``."""

import sys

from . import main

sys.exit(main())

"""``python -m facegate.app.cli``."""

import sys

from . import main

sys.exit(main())

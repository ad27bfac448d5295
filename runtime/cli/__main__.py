"""``python -m facegate.runtime.cli``."""

import sys

from . import main

sys.exit(main())

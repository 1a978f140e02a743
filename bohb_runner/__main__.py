"""``python -m bohb_runner`` is the ``bohb-runner`` command."""

import sys

from bohb_runner.cli import main

sys.exit(main())

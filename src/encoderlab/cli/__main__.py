"""``python -m encoderlab.cli``: the ``encoderlab`` command (how jobs and torchrun start it)."""

import sys

from encoderlab.cli.app import main

sys.exit(main())

"""`python3 -m nodeagent ...`: the same as `pilothouse agent ...`."""

import sys

from pilothouse.process import footprint

footprint.lean_process()  # before the process's modules import structlog

from nodeagent.main import main  # noqa: E402

sys.exit(main())

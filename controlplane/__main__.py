"""`python3 -m controlplane`: the same as `pilothouse controlplane`."""

import sys

from pilothouse.process import footprint

footprint.lean_process()  # before the process's modules import structlog

from controlplane.main import main  # noqa: E402

sys.exit(main())

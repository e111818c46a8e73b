"""`python3 -m nodeagent ...`: the same as `pilothouse agent ...`."""

import sys

from nodeagent.main import main

sys.exit(main())

"""`python3 -m nodeagent.hollow`: the same as `pilothouse hollow`."""

import sys

from nodeagent.hollow.main import main

sys.exit(main())

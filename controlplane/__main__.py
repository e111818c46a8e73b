"""`python3 -m controlplane`: the same as `pilothouse controlplane`."""

import sys

from controlplane.main import main

sys.exit(main())

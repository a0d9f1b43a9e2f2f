"""`python -m txmon.cli`: the same as the `txmon` command."""

import sys

from txmon.cli import main

sys.exit(main())

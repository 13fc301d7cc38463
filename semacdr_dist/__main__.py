"""``python -m semacdr_dist <command> [overrides...]``: the `semacdr-dist` command."""

import sys

from semacdr_dist.cli import main

sys.exit(main())

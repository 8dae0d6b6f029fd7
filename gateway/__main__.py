"""``python -m gateway``: the administration commands (see ``gateway.cli``)."""

import sys

from .cli import main

sys.exit(main())

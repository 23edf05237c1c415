"""``python -m openfgs.cli``: the same command as the openfgs console script."""

import sys

from openfgs.cli import main

sys.exit(main())

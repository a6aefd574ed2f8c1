"""``python -m hyperbrace.cli ...`` runs the ``hyperbrace`` command."""

import sys

from hyperbrace.cli import main

sys.exit(main())

"""``python -m greenlm`` runs the command-line interface."""

import sys

from greenlm.cli import main

sys.exit(main())

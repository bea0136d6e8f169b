"""``python -m hf_cmah.quickstart``: run the quickstart (see the package docstring)."""

import sys

from .pipeline import main

sys.exit(main())

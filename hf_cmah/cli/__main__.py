"""``python -m hf_cmah.cli``: the same as the `hf-cmah` console script."""

import sys

from .main import main

sys.exit(main())

"""Train a CMAH model: ``accelerate launch training/train_cmah.py CONFIG.yaml [--set K=V ...] [--resume]``.

The same as ``accelerate launch -m hf_cmah.training.train_cmah CONFIG.yaml`` and ``hf-cmah train
CONFIG``. The loop lives in the package (hf_cmah/training/train_cmah.py) so that an installed
wheel trains too; the parts both families share (checkpoints, resume, logs, evaluation) are
hf_cmah/training/session.py.
"""

import sys

from hf_cmah.training.train_cmah import main

if __name__ == "__main__":
    sys.exit(main())

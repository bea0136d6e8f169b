"""Train or evaluate a pre-aligned dual encoder: ``accelerate launch training/train_prealigned.py CONFIG.yaml``.

The same as ``accelerate launch -m hf_cmah.training.train_prealigned CONFIG.yaml`` and, for a
config with ``model.family: prealigned``, ``hf-cmah train CONFIG``. The loop lives in the package
(hf_cmah/training/train_prealigned.py) so that an installed wheel trains too; the parts both
families share (checkpoints, resume, logs, evaluation) are hf_cmah/training/session.py.
"""

import sys

from hf_cmah.training.train_prealigned import main

if __name__ == "__main__":
    sys.exit(main())

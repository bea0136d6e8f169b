"""Training: the CMAH loop run by ``accelerate launch -m hf_cmah.training.train_cmah`` and its typed configs."""

"""Training: ``hf-cmah train CONFIG`` / ``accelerate launch -m hf_cmah.training.train CONFIG`` runs the loop of the
config's model family (`train_cmah`, `train_prealigned`) on the shared `session` machinery; configs in `config`."""

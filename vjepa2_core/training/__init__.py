"""One training engine for pretraining and AC post-training: configs, schedules, optimiser groups, checkpoints,
distributed set-up and metric logging. The visible loops live in `training/` (train_ac.py, pretrain.py)."""

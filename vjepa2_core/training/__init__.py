"""One training engine for pretraining and AC post-training: configs, schedules, optimiser groups, checkpoints,
distributed set-up, metric logging, and the run life cycle both stages share (`engine.py`: resume state, cadence,
logs, stop rule, exit codes; `slurm.py`: `--slurm`). The visible loops live in `training/` (train_ac.py,
pretrain.py)."""

# One-command set-up: `make demo` runs the main job, `make test` runs the tests. Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
INSTALLED := $(VENV)/.installed
INTERFACES := $(VENV)/.interfaces
PYTEST_ARGS ?=

.PHONY: install interfaces colcon test lint format demo selfcheck bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# ROS launch system and `ros2` CLI (not on PyPI): wheels in ../shared/ros/launch-tools (see ../shared/ros/NOTES.md).
LAUNCH_TOOLS ?= $(CURDIR)/../shared/ros/launch-tools
$(INSTALLED): $(PY) setup.py requirements-cpu.txt Makefile
	$(PY) -c 'import torch' 2>/dev/null || $(PIP) install -q -r requirements-cpu.txt
	$(PIP) install -q -e ".[test,ros,sim,slurm,lerobot]"
	$(LAUNCH_TOOLS)/install.sh $(VENV)
	touch $@

install: $(INSTALLED) $(INTERFACES)

# vjepa2_interfaces (srv/action) built with plain CMake into the venv prefix (see ../shared/ros/NOTES.md).
$(INTERFACES): $(INSTALLED) $(shell find vjepa2_interfaces -type f 2>/dev/null)
	@if [ -d vjepa2_interfaces ]; then VENV=$(VENV) scripts/build_interfaces.sh; fi
	touch $@

interfaces: $(INTERFACES)

# The README's colcon route: both ROS packages built with colcon into build/colcon_ws (the `ros2 launch` tests use it).
COLCON_WS := $(CURDIR)/build/colcon_ws
colcon: $(INSTALLED)
	VENV=$(VENV) scripts/colcon_build.sh $(COLCON_WS) >/dev/null

test: install colcon
	VJEPA2_COLCON_WS=$(COLCON_WS) $(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(VENV)/bin/black --check .
	$(VENV)/bin/isort --check-only .
	$(VENV)/bin/ruff check .

format: $(INSTALLED)
	$(VENV)/bin/isort .
	$(VENV)/bin/black .
	$(VENV)/bin/ruff check --fix .

selfcheck: install
	$(VENV)/bin/vjepa2-selfcheck

# The main command: the simulated arm reaches a goal image through the ROS 2 planner node (shipped sim model).
# `make demo TASK=push` / `TASK=pick_and_place`: the arm pushes the block, or grasps and carries it, to where the
# goal image shows it (the shipped push / pick-and-place model, goal image + 2 demonstration frames).
TASK ?= reach
demo: install
	$(PY) -m vjepa2_ros.sim.demo --task $(TASK) --out runs/sim_demo $(SIM_DEMO_ARGS)

bench: install
	for b in bench/*_bench.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info

# Simulated Fetch arm (issue 8): the closed-loop demo over ROS 2 and the success-rate evaluation.
.PHONY: sim-demo sim-eval sim-train sim-train-pretrained-encoder
sim-demo: install
	$(PY) -m vjepa2_ros.sim.demo --task $(TASK) --out runs/sim_demo $(SIM_DEMO_ARGS)

sim-eval: install
	$(VENV)/bin/vjepa2-sim-eval --episodes 20 --task reach --out runs/sim_eval $(SIM_EVAL_ARGS)

# Train the shipped sim model (issue 8): collect -> AC post-training on a random frozen encoder -> export.
SIM_RUN := runs/sim_reach
sim-train: install
	$(VENV)/bin/vjepa2-sim-collect --episodes 400 --steps 40 --seed 0 --out $(SIM_RUN)/episodes
	$(PY) training/train_ac.py --config config/train/sim_reach_ac.yaml
	$(PY) -m vjepa2_ros.sim.export $(SIM_RUN)/ac_random_encoder/latest.pt vjepa2_ros/models/sim_reach.safetensors

# AC post-training from the encoder that RUN/pretrain/latest.pt holds, then the export the planner loads:
# $(call ac_from_pretrained,AC_CONFIG,RUN,FOLDER,OUT[,MORE --set overrides]) (config/train/AC_CONFIG.yaml, RUN/FOLDER)
define ac_from_pretrained
	$(PY) training/train_ac.py --config config/train/$(1).yaml --set meta.pretrain_checkpoint=$(2)/pretrain/latest.pt \
		--set folder=$(2)/$(3) --set data.feature_cache=$(2)/$(3)/features $(5)
	$(PY) -m vjepa2_ros.sim.export $(2)/$(3)/latest.pt $(4)
endef

# The same AC recipe on an encoder pretrained by our V-JEPA loop on the sim video: what pretraining is worth.
sim-train-pretrained-encoder: install
	$(PY) training/pretrain.py --config config/train/sim_reach_pretrain.yaml
	$(call ac_from_pretrained,sim_reach_ac,$(SIM_RUN),ac,$(SIM_RUN)/sim_reach_pretrained_encoder.safetensors)

# The shipped push model (issue 17): the reach recipe on push episodes (vjepa2_ros/models/README.md, push card).
.PHONY: sim-train-push
SIM_PUSH_RUN := runs/sim_push
sim-train-push: install
	$(VENV)/bin/vjepa2-sim-collect --task push --episodes 400 --steps 40 --seed 0 --out $(SIM_PUSH_RUN)/episodes
	$(PY) training/train_ac.py --config config/train/sim_push_ac.yaml
	$(PY) -m vjepa2_ros.sim.export $(SIM_PUSH_RUN)/ac_random_encoder/latest.pt vjepa2_ros/models/sim_push.safetensors

# The shipped pick-and-place model (issue 26): the push recipe on 300 pick-and-place episodes, collected as three
# runs side by side (pick-and-place card in vjepa2_ros/models/README.md).
.PHONY: sim-train-pick
SIM_PICK_RUN := runs/sim_pick
sim-train-pick: install
	mkdir -p $(SIM_PICK_RUN)
	for s in 0 1 2; do nice -n 5 $(VENV)/bin/vjepa2-sim-collect --task pick_and_place --episodes 100 --steps 40 \
		--seed $$s --out $(SIM_PICK_RUN)/episodes_$$s > $(SIM_PICK_RUN)/collect_$$s.log 2>&1 & done; wait
	for s in 0 1 2; do test -f $(SIM_PICK_RUN)/episodes_$$s/collection.json || exit 1; done
	nice -n 5 $(PY) training/train_ac.py --config config/train/sim_pick_ac.yaml
	$(PY) -m vjepa2_ros.sim.export $(SIM_PICK_RUN)/ac_random_encoder/latest.pt \
		vjepa2_ros/models/sim_pick_and_place.safetensors

# What pretraining is worth on push (issue 17; results in the push card): after sim-train-push, the same AC recipe
# on (b) an encoder pretrained by our V-JEPA loop on the push video, frozen, and (c) that encoder fine-tuned in the
# AC stage (meta.finetune_encoder, encoder lr x0.1, EMA target); (a) is the shipped random frozen encoder.
.PHONY: sim-train-push-encoders
sim-train-push-encoders: install
	$(PY) training/pretrain.py --config config/train/sim_push_pretrain.yaml
	$(call ac_from_pretrained,sim_push_ac,$(SIM_PUSH_RUN),ac_pretrained,$(SIM_PUSH_RUN)/push_pretrained.safetensors)
	$(call ac_from_pretrained,sim_push_ac,$(SIM_PUSH_RUN),ac_finetuned,$(SIM_PUSH_RUN)/push_finetuned.safetensors,\
		--set data.feature_cache=null --set meta.finetune_encoder=true --set optimization.enc_lr_scale=0.1)

"""`--slurm` for both training stages: submitit jobs of one task per GPU, requeued on preemption.

Each task exports the torch.distributed variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) from the SLURM
environment, then runs the same `train(cfg, resume=True)` as torchrun would, so a requeued job resumes from
`<folder>/latest.pt`. Nodes, tasks (GPUs) per node, CPUs and memory come from the config's launcher keys; the
command line adds partition, account, QOS, time limit and a nodes override (`add_launch_arguments`).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

CLUSTERS = ("slurm", "local", "debug")


class LaunchError(RuntimeError):
    """The job cannot be submitted here (no submitit, no SLURM): exit code 2 with `prog: error:`."""


class TrainTask:
    """Picklable callable that submitit runs on every task; `checkpoint` makes preemption requeue it."""

    def __init__(self, train_fn: Callable[..., dict], cfg: dict):
        self.train_fn, self.cfg = train_fn, cfg

    def __call__(self) -> dict:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return self.train_fn(self.cfg, resume=True)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainTask(self.train_fn, self.cfg))


def _mem_gb(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*[gG]?[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"mem_per_gpu must look like '64G', got {text!r}")
    return int(m.group(1))


def time_minutes(text: str) -> int:
    """SLURM time limit -> minutes: `90`, `HH:MM:SS`, `MM:SS`... as sbatch reads them, or `D-HH[:MM[:SS]]`."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"time must be minutes, HH:MM:SS or D-HH:MM, got {text!r}")
    days, a, b, c = (int(g) if g else 0 for g in m.groups())
    if m.group(1):  # D-HH[:MM[:SS]]
        minutes = days * 1440 + a * 60 + b + (c > 0)
    elif m.group(4):  # HH:MM:SS
        minutes = a * 60 + b + (c > 0)
    elif m.group(3):  # MM:SS
        minutes = a + (b > 0)
    else:
        minutes = a
    if minutes <= 0:
        raise argparse.ArgumentTypeError(f"time must be positive, got {text!r}")
    return minutes


def add_launch_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`--slurm` and its options, the same for both training scripts."""
    g = parser.add_argument_group("SLURM (submitit): nodes x tasks_per_node GPUs from the config")
    g.add_argument("--slurm", action="store_true", help="submit the run as a SLURM job instead of running it")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--account", help="SLURM account")
    g.add_argument("--qos", help="SLURM quality of service")
    g.add_argument("--time", type=time_minutes, default=4320, help="time limit: minutes or [D-]HH:MM:SS (3 days)")
    g.add_argument("--nodes", type=int, help="number of nodes (overrides the config's nodes)")
    g.add_argument("--cluster", choices=CLUSTERS, default="slurm", help="submitit back end (local: this machine)")
    g.add_argument("--dry-run", action="store_true", help="with --slurm: print the sbatch script, submit nothing")
    return parser


def check_launch_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`prog: error:` (exit 2) for SLURM options given without --slurm, or a bad node count."""
    options = ("partition", "account", "qos", "nodes", "dry_run")
    given = [f"--{k.replace('_', '-')}" for k in options if getattr(args, k)]
    if given and not args.slurm:
        parser.error(f"{', '.join(given)} only apply with --slurm")
    if args.nodes is not None and args.nodes < 1:
        parser.error(f"--nodes must be at least 1, got {args.nodes}")


def executor_parameters(cfg: Mapping[str, Any], args: argparse.Namespace | None = None) -> dict[str, Any]:
    """submitit AutoExecutor parameters of a run: generic ones plus `slurm_partition/account/qos` when given."""
    nodes = getattr(args, "nodes", None) or cfg["nodes"]
    gpus = cfg["tasks_per_node"]
    params: dict[str, Any] = {
        "name": f"{cfg['app']}-{Path(cfg['folder']).name}",
        "nodes": nodes,
        "tasks_per_node": gpus,
        "gpus_per_node": gpus,
        "timeout_min": getattr(args, "time", None) or 4320,
    }
    if cfg.get("cpus_per_task"):
        params["cpus_per_task"] = cfg["cpus_per_task"]
    if cfg.get("mem_per_gpu"):
        params["mem_gb"] = _mem_gb(cfg["mem_per_gpu"]) * gpus
    for key in ("partition", "account", "qos"):
        if getattr(args, key, None):
            params[f"slurm_{key}"] = getattr(args, key)
    return params


def sbatch_script(cfg: Mapping[str, Any], args: argparse.Namespace | None = None) -> str:
    """The sbatch file submitit would write for this run (no cluster needed): what `--dry-run` prints."""
    from submitit.slurm import slurm

    generic = executor_parameters(cfg, args)
    names = slurm.SlurmExecutor._equivalence_dict()
    params = {names.get(k, k.removeprefix("slurm_")): v for k, v in generic.items()}
    if "mem" in params:
        params["mem"] = f"{params['mem']}GB"
    folder = Path(cfg["folder"]) / "slurm" / "%j"
    return slurm._make_sbatch_string(command="<submitit task: train(cfg, resume=True)>", folder=folder, **params)


def log_folder(cfg: Mapping[str, Any], cluster: str | None) -> Path:
    """Where a job's logs go: <folder>/slurm/<job id> on SLURM; <folder>/slurm/local (files named by job id) on this
    machine, because submitit's local controller opens its log files in the %j folder that its parent creates only
    after starting it (on a loaded machine the controller won that race: FileNotFoundError, job lost)."""
    return Path(cfg["folder"]) / "slurm" / ("local" if cluster == "local" else "%j")


def make_executor(cfg: Mapping[str, Any], args: argparse.Namespace | None = None, cluster: str | None = None):
    """A submitit AutoExecutor with `executor_parameters` set; logs go to `log_folder`."""
    try:
        import submitit
    except ImportError as e:
        raise LaunchError("SLURM submission needs submitit: pip install 'vjepa2_ros[slurm]'") from e
    cluster = cluster or getattr(args, "cluster", None)
    try:
        executor = submitit.AutoExecutor(folder=log_folder(cfg, cluster), cluster=cluster)
    except RuntimeError as e:  # e.g. no srun on this machine
        raise LaunchError(f"--slurm: {e}") from e
    executor.update_parameters(**executor_parameters(cfg, args))
    return executor


def submit(
    train_fn: Callable[..., dict],
    cfg: dict,
    timeout_min: int = 4320,
    cluster: str | None = None,
    args: argparse.Namespace | None = None,
):
    """Submit `train_fn(cfg, resume=True)` on nodes x tasks_per_node GPUs; returns the submitit job."""
    if args is None:
        args = argparse.Namespace(time=timeout_min, nodes=None, partition=None, account=None, qos=None)
    return make_executor(cfg, args, cluster).submit(TrainTask(train_fn, cfg))


def launch(train_fn: Callable[..., dict], cfg: dict, args: argparse.Namespace) -> int:
    """The `--slurm` branch of a training script's main: print the sbatch script or submit, exit code 0."""
    if args.dry_run:
        print(sbatch_script(cfg, args))
        return 0
    job = submit(train_fn, cfg, args=args, cluster=args.cluster)
    logs = str(log_folder(cfg, args.cluster)).replace("%j", str(job.job_id))
    print(f"submitted job {job.job_id}: logs in {logs}", flush=True)
    if args.cluster == "local":  # this machine: wait for the tasks and print their summaries (one JSON line)
        print(json.dumps(job.results()), flush=True)
    return 0

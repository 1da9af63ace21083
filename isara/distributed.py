"""Step 7 on several processes: the train stage reruns itself under Hugging Face accelerate.

Every process plans the same global batches (same seed), trains on its slice of each, and DDP
averages the gradients, so a step sees the examples and takes the update of the single-process
run, up to the order in which floats are summed. DDP / FSDP / DeepSpeed are accelerate's configs.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from isara.config import TrainParams
from isara.errors import IsaraError
from isara.loss import collate, step_loss

log = logging.getLogger(__name__)

# Set in every process torchrun starts (and by accelerate for MPI ones): this one was launched.
LAUNCHED = ("LOCAL_RANK", "WORLD_SIZE")

# What a finished Group leaves behind, kept until the process ends without teardown (Group.close).
_SPENT: list = []


def launched() -> bool:
    """Whether accelerate (torchrun, mpirun) started this process."""
    return any(v in os.environ for v in LAUNCHED)


def launch_command(cfg: TrainParams, argv: list[str]) -> list[str]:
    """`accelerate launch` running `argv` (a stage and its arguments) in cfg.processes processes."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.processes)]
    if cfg.accelerate_config:
        return [*cmd, "--config_file", cfg.accelerate_config, *argv]
    # accelerate's --cpu starts one process and leaves the others to mpirun; its torchrun launcher
    # (--multi_gpu) starts them all, and without a GPU they join over gloo (Group below). The other
    # flags are the defaults accelerate would otherwise warn about; port 0 = a free one.
    local = ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [*cmd, *local, "--main_process_port", "0", *argv]


def launch_env(cfg: TrainParams) -> dict[str, str]:
    """The launched processes' environment: without a config they all run here, so gloo joins them
    over the loopback interface rather than whatever address the host name resolves to."""
    env = dict(os.environ)
    if not cfg.accelerate_config and Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def relaunch(cfg: TrainParams) -> None:
    """With cfg.processes > 1, run this stage again under accelerate and exit with it."""
    if cfg.processes == 1 or launched():
        return
    cmd = launch_command(cfg, sys.argv)
    log.info("training in %d processes: %s", cfg.processes, shlex.join(cmd))
    status = subprocess.run(cmd, env=launch_env(cfg)).returncode
    if status:
        raise IsaraError(f"train: the {cfg.processes} training processes failed (exit status {status}), see above")
    sys.exit(0)


def is_main(cfg: TrainParams) -> bool:
    """The process that writes outputs: rank 0, or the only one (whatever RANK a shell exports)."""
    return cfg.processes == 1 or os.environ.get("RANK", "0") == "0"


def local_processes(cfg: TrainParams) -> int:
    """Training processes on this machine, which share its cores."""
    return 1 if cfg.processes == 1 else int(os.environ.get("LOCAL_WORLD_SIZE", 1))


def shard(idx: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, bool]:
    """This rank's contiguous slice of a planned batch, and whether it is real.

    A batch smaller than the process count leaves some ranks nothing; they run its first example
    at weight 0, because every rank must take part in each gradient average.
    """
    mine = np.array_split(idx, world)[rank]
    return (mine, True) if len(mine) else (idx[:1], False)


def _batch_loss(model):
    """step_loss as a module's forward: DDP averages the gradients only of work done inside its
    wrapper's forward, and step_loss calls the decoder and the head directly."""
    import torch

    class BatchLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids, mask, labels, weights, n: float):
            return step_loss(self.model, ids, mask, labels, weights, n)

    return BatchLoss()


class Group:
    """This process's place among the training processes, and one step of a batch on all of them."""

    def __init__(self, cfg: TrainParams) -> None:
        import torch
        from accelerate import Accelerator

        self.acc = Accelerator(cpu=not torch.cuda.is_available())
        self.rank, self.world, self.main = self.acc.process_index, self.acc.num_processes, self.acc.is_main_process
        if self.world != cfg.processes:
            raise IsaraError(
                f"train.processes={cfg.processes}, but {self.world} process(es) were launched: run the train "
                "stage itself, which launches them"
            )
        if not self.main:  # the main process reports for all: the others hold the same numbers
            logging.getLogger().setLevel(logging.ERROR)

    def prepare(self, model, opt):
        """Wrap model and optimizer (DDP, or what the accelerate config asks for); returns self.step."""
        self.net, self.opt = self.acc.prepare(_batch_loss(model), opt)
        return self.step

    def step(self, examples: list, group: list[np.ndarray], pad_id: int, bf16: bool) -> tuple[float, int]:
        """One optimizer step on a group of planned batches; (the whole group's loss, its tokens)."""
        import torch

        rows = sum(len(idx) for idx in group)
        part = torch.zeros(2)
        for j, idx in enumerate(group):
            mine, real = shard(idx, self.rank, self.world)
            ids, mask, labels, weights = (t.to(self.acc.device) for t in collate([examples[i] for i in mine], pad_id))
            weights = weights if real else torch.zeros_like(weights)
            with torch.autocast(self.acc.device.type, dtype=torch.bfloat16, enabled=bf16):
                # rows / world: DDP divides the summed gradients by world, so each rank's weighted sum
                # over the group's rows makes the average that of one batch holding the whole group.
                loss = self.net(ids, mask, labels, weights, rows / self.world)
            if j == 0:
                self.opt.zero_grad(set_to_none=True)
            self.acc.backward(loss)
            part += torch.stack([loss.detach().float().cpu() / self.world, mask.sum().float().cpu() * real])
        self.opt.step()
        total, tokens = self.acc.reduce(part.to(self.acc.device), "sum").tolist()
        return total, int(tokens)

    def close(self) -> None:
        """Leave the process group, and keep what used it until the process ends.

        Gloo's worker thread frees a finished collective under the backend's lock, and takes the
        GIL to drop the Python tensors it held; the backend's destructor takes that lock. Freeing
        the DDP wrapper on the main thread (which holds the GIL) while a worker is at that point
        deadlocks: 9 of 25 runs of the 2-process stage hung here after their last step. So the
        wrapper is never freed: a launched process ends through end_launched(), which skips
        destructors.
        """
        self.acc.end_training()  # leaves the process group, which torch warns about otherwise
        _SPENT.append((self.acc, self.net, self.opt))


def end_launched() -> None:
    """End a process accelerate launched, once its stage is done, without running destructors."""
    if launched():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

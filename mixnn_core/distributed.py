"""Multi-process training with torch.distributed (DistributedDataParallel).

A ``Trainer`` made in every process of an initialised process group trains together with the
others (``mixnn_core.trainer`` has the details):

- every process holds the whole dataset and the same model, and draws the same permutation
  and augmentation from the seeded generator; each trains on its 1 / W of every batch and
  DistributedDataParallel averages the gradients, so the global batch stays ``batch_size``;
- the evaluation pass, mixture fit, neighbour search and label correction of a mixing epoch
  run once, on rank 0, and the neighbours, clean probabilities and soft labels are broadcast;
- rank 0 alone writes checkpoints; they load into a single-process trainer.

Results match a single process closely but not bit for bit: BatchNorm normalises each
process's share of a batch, and gradients are summed in another order.

Start the processes with torchrun (its variables are read by ``init_from_environment``)::

    torchrun --nproc-per-node 2 -m mixnn_core.distributed --out digits.npz

or let ``launch`` start them (``python -m mixnn_core.distributed --processes 2 ...``). The
CPU uses the gloo backend, CUDA NCCL. The command line trains scikit-learn's bundled digits
(no download) with injected symmetric noise: a demonstration, not the product's ``mixnn clean``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing

from mixnn_core.config import cpu_preset
from mixnn_core.noise import inject_noise
from mixnn_core.trainer import Trainer

# The variables torchrun sets for each process it starts (LOCAL_RANK is read on CUDA only).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LOOPBACK_ADDRESS = "127.0.0.1"


def init_from_environment(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that torchrun's variables describe; returns (rank, world size).

    ``backend`` defaults to NCCL when CUDA is present (each process then uses the GPU
    ``LOCAL_RANK``), else gloo.
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(f"not started by torchrun or launch(): {', '.join(missing)} unset")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, init_method="env://")
    return dist.get_rank(), dist.get_world_size()


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK_ADDRESS, 0))
        return probe.getsockname()[1]


def launch(n_processes: int, fn, *args) -> list:
    """Run ``fn(*args)`` in ``n_processes`` new processes forming one process group.

    The group meets on a free port of 127.0.0.1, and gloo's connections stay on the loopback
    interface. ``fn`` and ``args`` must be picklable (a module-level function). Returns each
    process's return value, in rank order; an exception in any process is raised here.
    """
    if n_processes < 1:
        raise ValueError(f"n_processes must be >= 1, got {n_processes}")
    port = free_loopback_port()
    with tempfile.TemporaryDirectory(prefix="mixnn-launch-") as results:
        torch.multiprocessing.spawn(_run_process, args=(n_processes, port, results, fn, args),
                                    nprocs=n_processes)
        return [pickle.loads(Path(results, f"rank-{rank}.pkl").read_bytes())
                for rank in range(n_processes)]


def _run_process(rank: int, world_size: int, port: int, results: str, fn, args) -> None:
    """One process of ``launch``: join the group, run ``fn``, leave its result in ``results``."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR=LOOPBACK_ADDRESS, MASTER_PORT=str(port))
    if "lo" in {name for _, name in socket.if_nameindex()}:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    _share_cores(world_size)
    result = run_in_group(fn, *args)
    Path(results, f"rank-{rank}.pkl").write_bytes(pickle.dumps(result))


def run_in_group(fn, *args):
    """``fn(*args)`` inside the process group of ``init_from_environment``, left afterwards."""
    init_from_environment()
    try:
        return fn(*args)
    finally:
        dist.destroy_process_group()


def _share_cores(world_size: int) -> None:
    """Give each of ``world_size`` processes its share of the CPUs, as torchrun does."""
    if "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, len(os.sched_getaffinity(0)) // world_size)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def digits_with_noise(noise_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 images (N, 1, 8, 8), their true labels, and noisy labels
    with ``noise_rate`` symmetric noise (round(rate * N) labels redrawn from all 10 classes)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.round(data.images * 255 / 16).astype(np.uint8)[:, None]
    labels = data.target.astype(np.int64)
    noisy, _ = inject_noise(labels, 10, "symmetric", noise_rate, seed=seed)
    return images, labels, noisy


def train_digits(epochs: int, noise_rate: float, seed: int, out: str,
                 checkpoint: str | None = None) -> float:
    """Train MixNN on noisy digits (the ``cpu`` preset); rank 0 writes ``out`` (.npz).

    The .npz holds ``true_label``, ``given_label``, ``suggested_label``, ``soft_label`` and
    ``p_clean`` per sample. Returns the label recovery: the share of suggested labels that
    equal the true ones.
    """
    images, labels, noisy = digits_with_noise(noise_rate, seed)
    trainer = Trainer(cpu_preset(epochs, seed=seed, device="cpu"), images, noisy, 10)
    trainer.fit()
    outputs = trainer.outputs()
    recovery = float((outputs.suggested_label == labels).mean())
    if trainer.rank == 0:
        np.savez(out, true_label=labels, given_label=noisy, suggested_label=outputs.suggested_label,
                 soft_label=outputs.soft_label, p_clean=outputs.p_clean)
        print(f"{trainer.world_size} process(es), {epochs} epochs: labels right "
              f"{(noisy == labels).mean():.1%} given -> {recovery:.1%} suggested; wrote {out}")
    if checkpoint is not None:
        trainer.save(checkpoint)
    return recovery


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mixnn_core.distributed",
        description="Multi-process MixNN on scikit-learn's digits with injected noise. Under "
                    "torchrun, each process it starts joins the group; otherwise --processes "
                    "processes are started on this machine.")
    parser.add_argument("--out", required=True, help="the .npz of per-sample outputs to write")
    parser.add_argument("--processes", type=int, default=2,
                        help="processes to start when not run by torchrun (default 2)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--noise-rate", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="also write the trained state here (rank 0)")
    args = parser.parse_args(argv)
    job = (args.epochs, args.noise_rate, args.seed, args.out, args.checkpoint)
    if "RANK" in os.environ:
        run_in_group(train_digits, *job)
    else:
        launch(args.processes, train_digits, *job)


if __name__ == "__main__":
    main()

"""Epoch time of the LeNet worker against a naive worker and against a pure compute loop.

    python bench/worker_epoch.py [--data-dir ../shared/data/mnist-t10k] [--batch-sizes 16,128] [--repeats 3]

Three ways to train the reduced LeNet for one epoch on the same images, measured side by side
in one process, interleaved, best of ``--repeats``:

* naive: a per-item ``Dataset`` that turns each uint8 image into a normalised float tensor when
  it is asked for, and a shuffling ``DataLoader`` (the pattern of hpbandster's PyTorch example);
* worker: ``workers.training.train`` as a study job runs it (data resident as tensors, batches
  drawn by index, per-epoch order from (seed, epoch)), evaluation sets kept tiny so that the
  figure is the training epoch;
* pure: forward, backward and step on batches made before the clock starts: the floor.

Prints seconds per epoch and the ratios worker/pure (target <= 1.15 on CPU) and naive/worker.
CPU, one thread (a worker's default), unless ``--threads`` or ``--device`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from workers.datasets import TensorSplits  # noqa: E402
from workers.idx import read_images, read_labels  # noqa: E402
from workers.training import build_model, build_optimizer, resolve_config, train  # noqa: E402

DEFAULT_DATA = PROJECT.parent / "shared" / "data" / "mnist-t10k"
CONFIG = {"lr": 0.01, "num_filters": 16, "filter_size": 5, "optimizer": "sgd", "momentum": 0.9}
EVAL_IMAGES = 64


def clock() -> float:
    """CPU time of this process: on a shared machine, wall-clock time measures the neighbours too.

    With one torch thread and no loader processes, all the work of each variant is in this
    process, so CPU seconds are the cost to compare; ``--wall`` switches to wall-clock time.
    """
    return time.perf_counter() if WALL_CLOCK else time.process_time()


WALL_CLOCK = False


def load_raw(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images_path = next(
        (p for p in (data_dir / "t10k-images-idx3-ubyte.gz", data_dir / "t10k-images-idx3-ubyte") if p.exists()), None
    )
    labels_path = next(
        (p for p in (data_dir / "t10k-labels-idx1-ubyte.gz", data_dir / "t10k-labels-idx1-ubyte") if p.exists()), None
    )
    if images_path is None or labels_path is None:
        sys.exit(f"bench/worker_epoch.py: no MNIST t10k IDX files in {data_dir} (give --data-dir DIR)")
    images = read_images(images_path)
    return images, read_labels(labels_path, len(images))


class PerItemMNIST(Dataset):
    """What a torchvision-style dataset does: decode and normalise one image per ``__getitem__``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.images[index].astype(np.float32) / 255.0)
        return image.reshape(1, *image.shape[-2:]), int(self.labels[index])


def naive_epoch(images: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device) -> float:
    config = resolve_config(dict(CONFIG, batch_size=batch_size))
    started = clock()
    loader = DataLoader(PerItemMNIST(images, labels), batch_size=batch_size, shuffle=True, num_workers=0)
    model = build_model(config, (1, 28, 28), seed=0).to(device)
    optimizer = build_optimizer(config, model)
    criterion = nn.CrossEntropyLoss()
    model.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    float(loss.item())
    return clock() - started


def worker_epoch(data: TensorSplits, batch_size: int) -> float:
    started = clock()
    train(dict(CONFIG, batch_size=batch_size), 1, data, seed=0)
    return clock() - started


def pure_epoch(data: TensorSplits, batch_size: int) -> float:
    config = resolve_config(dict(CONFIG, batch_size=batch_size))
    order = torch.randperm(len(data.train_x), device=data.device)
    batches = [
        (data.train_x[order[i : i + batch_size]], data.train_y[order[i : i + batch_size]])
        for i in range(0, len(order), batch_size)
    ]
    model = build_model(config, data.input_shape, seed=0).to(data.device)
    optimizer = build_optimizer(config, model)
    criterion = nn.CrossEntropyLoss()
    model.train()
    started = clock()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    float(loss.item())
    return clock() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA, help=f"MNIST t10k IDX files (default: {DEFAULT_DATA})"
    )
    parser.add_argument("--batch-sizes", default="16,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=None, help="train on the first N images only (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time (a quiet machine)")
    args = parser.parse_args()
    global WALL_CLOCK
    WALL_CLOCK = args.wall or args.device != "cpu"
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images, labels = load_raw(args.data_dir)
    images, labels = images[: args.images], labels[: args.images]
    as_float = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(len(images), 1, 28, 28)
    as_labels = torch.from_numpy(labels.astype(np.int64))
    data = TensorSplits(
        train_x=as_float.to(device), train_y=as_labels.to(device),
        val_x=as_float[:EVAL_IMAGES].to(device), val_y=as_labels[:EVAL_IMAGES].to(device),
        test_x=as_float[:EVAL_IMAGES].to(device), test_y=as_labels[:EVAL_IMAGES].to(device),
        device=device,
    )  # fmt: skip
    print(
        f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, device {device}, {args.threads} thread(s); "
        f"{len(images)} MNIST images from {args.data_dir}; {'wall-clock' if WALL_CLOCK else 'CPU'} seconds, "
        f"best of {args.repeats}"
    )
    print(f"{'batch':>5}  {'naive s':>8}  {'worker s':>8}  {'pure s':>8}  {'worker/pure':>11}  {'naive/worker':>12}")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        times: dict[str, list[float]] = {"naive": [], "worker": [], "pure": []}
        for _ in range(args.repeats):  # interleaved, so that load on the machine hits all three alike
            times["pure"].append(pure_epoch(data, batch_size))
            times["worker"].append(worker_epoch(data, batch_size))
            times["naive"].append(naive_epoch(images, labels, batch_size, device))
        best = {name: min(values) for name, values in times.items()}
        print(
            f"{batch_size:>5}  {best['naive']:>8.3f}  {best['worker']:>8.3f}  {best['pure']:>8.3f}  "
            f"{best['worker'] / best['pure']:>11.3f}  {best['naive'] / best['worker']:>12.2f}"
        )


if __name__ == "__main__":
    main()

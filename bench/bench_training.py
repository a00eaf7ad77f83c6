"""Training speed benchmark: one training step (augmentation, forward, the three losses,
backward, Adam) of the classifier network, every figure a ratio against the default
setup timed in the same run (all cores, channels_last, fp32).

Compared: plain NCHW memory, bfloat16 autocast, one thread, and two one-thread
processes at once (how ``python -m classifier train --network original|dehazed`` trains
the two networks side by side), and with ``--widths`` the default setup at other network
widths (what a wider member would cost here). Each configuration runs in its own process,
so thread settings cannot leak from one to the next. The last column is the time one
epoch over ``--epoch-images`` chips would take (default: the 25,906 Planet training chips).

    python bench/bench_training.py [--size 32] [--width 0.5] [--widths 0.75,1.0]
                                   [--batch-size 64] [--steps 20] [--repeat 3] [--smoke]

The configurations run in turn, ``--repeat`` rounds; each prints its median round.
``--smoke`` (the test suite's run): batch 8, one step, one round, every configuration;
seconds, no figures worth keeping.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = (  # name, threads, channels_last, bf16, processes
    ("default: all cores, channels_last, fp32", 0, True, False, 1),
    ("plain NCHW memory", 0, False, False, 1),
    ("bfloat16 autocast", 0, True, True, 1),
    ("one thread", 1, True, False, 1),
    ("two one-thread processes at once", 1, True, False, 2),
)
Config = tuple[str, float, int, bool, bool, int]  # name, width, then as in CONFIGS


def configs(width: float, widths: list[float]) -> list[Config]:
    """CONFIGS at ``width``, then the default setup at each of ``widths``."""
    return ([(name, width, *rest) for name, *rest in CONFIGS]
            + [(f"default at width {w}", w, *CONFIGS[0][1:]) for w in widths])


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Run in a child process: seconds per training step, after warm-up."""
    import torch

    sys.path.insert(0, str(ROOT))
    from classifier.augment import augment_batch
    from classifier.inference import autocast
    from classifier.losses import LossWeights, combined_loss
    from classifier.model import ModelConfig, create_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = create_model(ModelConfig(num_labels=17, input_size=args.size, width=args.width))
    model = model.to(memory_format=fmt).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.rand(args.batch_size, 3, args.size, args.size)
    targets = (torch.rand(args.batch_size, 17) < 0.3).float()

    def step() -> None:
        batch = augment_batch(images).contiguous(memory_format=fmt)
        with autocast(torch.device("cpu"), args.bf16):
            logits = model(batch)
        loss = combined_loss(logits.float(), targets, LossWeights())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    return {"seconds_per_step": (time.perf_counter() - started) / args.steps,
            "threads": torch.get_num_threads()}


def run_config(args: argparse.Namespace, width: float, threads: int, channels_last: bool,
               bf16: bool, processes: int) -> list[dict[str, float]]:
    command = [sys.executable, __file__, "--child", "--size", str(args.size), "--width",
               str(width), "--batch-size", str(args.batch_size), "--steps",
               str(args.steps), "--threads", str(threads)]
    command += ["--channels-last"] if channels_last else []
    command += ["--bf16"] if bf16 else []
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
                for _ in range(processes)]
    results = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"benchmark child failed: {' '.join(command)}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--widths", default="", metavar="W,W",
                        help="also time the default setup at these widths")
    parser.add_argument("--epoch-images", type=int, default=25906,
                        help="images per epoch for the minutes-per-epoch column")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all configurations")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite: "
                        "--batch-size 8 --steps 1 --repeat 1")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.batch_size, args.steps, args.repeat = 8, 1, 1
    if args.child:
        print(json.dumps(measure(args)))
        return

    print(f"training step, VGG16-BN width {args.width}, {args.size} px, batch "
          f"{args.batch_size}, {args.steps} steps, median of {args.repeat} rounds, "
          f"{os.cpu_count()} cores")
    table = configs(args.width, [float(w) for w in args.widths.split(",") if w])
    rounds: dict[str, list[float]] = {name: [] for name, *_ in table}
    for _ in range(args.repeat):  # interleaved, so drifting machine load hits all alike
        for name, *setup in table:
            results = run_config(args, *setup)
            rounds[name].append(max(r["seconds_per_step"] for r in results))
    baseline = None
    for name, *_, processes in table:
        seconds = statistics.median(rounds[name])
        throughput = processes * args.batch_size / seconds
        baseline = baseline or throughput
        print(f"{name:42s} {seconds * 1e3:7.0f} ms/step  {throughput:7.0f} img/s  "
              f"{throughput / baseline:5.2f}x  {args.epoch_images / throughput / 60:6.1f} "
              f"min/epoch")


if __name__ == "__main__":
    main()

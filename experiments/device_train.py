"""Train the EfficientNet members on a lent GPU machine inside one short, self-timed call.

    python -m experiments.device_train --data DIR --out DIR [--budget 540]

Research tooling for issue 19 (never imported by the product). A GPU call here is capped
(10 minutes a command, 15 minutes a session), so the run times itself: a one-epoch probe
measures seconds per epoch, the epoch count of the real runs is chosen to fit what is
left, the members train in parallel (one process each; small networks leave the GPU
mostly idle, so they share it well), and a candidate is assembled with ``--no-test`` so
that the choice of members is made on validation only, later, by
``python -m experiments.members``. Every network goes through the same
``python -m classifier train`` / ``assemble`` commands as on the CPU.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

#: (network kind, member, input size): the runs, all from ImageNet, all at the same size.
RUNS = (("original", 1, 128), ("original", 2, 128), ("original", 3, 128), ("original", 4, 128),
        ("dehazed", 1, 128))


def train_command(data: Path, kind: str, member: int, size: int, epochs: int, out: Path,
                  device: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "classifier", "train",
            "--labels", str(data / "train_v2.csv"), "--images", str(data / "train-jpg.tar"),
            "--size", "32", "--arch", "efficientnet_lite0", "--pretrained",
            "--input-size", str(size), "--network", kind, "--member", str(member),
            "--epochs", str(epochs), "--schedule", "cosine", "--lr", "5e-4",
            "--patience", "5", "--threads", "3", "--device", device, "--out", str(out), *extra]


def epoch_seconds(log: Path) -> float:
    with log.open() as f:
        return max(float(row["seconds"]) for row in csv.DictReader(f))


def probe_epochs(args: argparse.Namespace, started: float) -> int:
    """Epochs that fit the budget, from one probe epoch (which overestimates: the first
    epoch pays for CUDA's start-up; on an H200 it took 40 s, the next ones 16 s each with
    four networks in parallel)."""
    probe = args.out / "runs" / "probe"
    # exits 1: paused after its one epoch
    subprocess.run(train_command(args.data, "original", 9, 128, args.max_epochs, probe,
                                 args.device, ("--max-epochs-this-run", "1")), check=False)
    per_epoch = epoch_seconds(probe / "train_log_original-9.csv")
    left = args.budget - (time.time() - started) - args.reserve
    # parallel processes share the GPU and the host: count each epoch 1.5x the probe's,
    # plus 25 s for start-up (imports, decoding, dehazing)
    epochs = max(1, min(args.max_epochs, int((left - 25) / (per_epoch * 1.5))))
    print(f"probe: {per_epoch:.1f} s per epoch; {left:.0f} s left -> {epochs} epochs",
          flush=True)
    return epochs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for everything")
    parser.add_argument("--max-epochs", type=int, default=14)
    parser.add_argument("--reserve", type=float, default=110.0,
                        help="seconds kept for the candidate's assembly and packing")
    parser.add_argument("--epochs", type=int, default=0, help="skip the probe: train this many")
    parser.add_argument("--device", default="cuda", help="cpu only for a smoke run")
    args = parser.parse_args(argv)
    started = time.time()
    runs = args.out / "runs"

    epochs = args.epochs or probe_epochs(args, started)

    procs = []
    for kind, member, size in RUNS:
        out = runs / f"{kind}-{member}"
        log = (args.out / f"log_{kind}-{member}.txt").open("w")
        procs.append((out / f"{kind}-{member}.pt",
                      subprocess.Popen(train_command(args.data, kind, member, size, epochs, out,
                                                     args.device),
                                       stdout=log, stderr=subprocess.STDOUT)))
    deadline = started + args.budget - args.reserve
    for _, proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
    done = [str(path) for path, _ in procs if path.exists()]
    print(f"trained {len(done)} of {len(procs)} at {time.time() - started:.0f} s", flush=True)
    if done:
        subprocess.run([sys.executable, "-m", "classifier", "assemble", *done,
                        "--images", str(args.data / "train-jpg.tar"), "--out",
                        str(args.out / "cand"), "--weights", "fp16", "--no-test",
                        "--device", args.device, "--name", "planet32-effl0x128-cand"], check=True)
    print(f"finished at {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()

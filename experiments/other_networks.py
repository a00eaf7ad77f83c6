"""Another model's networks beside this one's, by validation CV: does a network trained
differently (another architecture, input size or image kind) add what more members of
the same recipe did not? Both models must share the validation split; the other model's
stored outputs are used as they are (no network runs).

    git show f74ac6b:classifier/default_model/val_outputs.npz > runs/old/val_outputs.npz
    python -m experiments.other_networks --other runs/old/val_outputs.npz

Each row refits the whole post-processing per fold (the splits of ``cv_scores``) and is
paired with this model as shipped. Nothing here touches the test split.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from classifier.evaluation import Setting, StoredModel, cv_scores, paired
from classifier.store import ValOutputs


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="model directory, or 'default'")
    parser.add_argument("--other", type=Path, required=True, help="another val_outputs.npz")
    args = parser.parse_args(argv)
    stored = StoredModel.load(args.model)
    own, labels = stored.val, stored.labels
    other = ValOutputs.load(args.other)
    if other.names != own.names or not np.array_equal(other.targets, own.targets):
        raise SystemExit("the two models were not validated on the same chips")
    ours = own.get("original", 8)
    members = own.member_outputs("original", 8) or [ours]
    theirs = {kind: other.get(kind, 8) for kind in ("original", "dehazed")}
    baseline = cv_scores(own, stored.shipped, labels=labels)

    def score(original: np.ndarray, second: np.ndarray | None = None,
              dehaze: str = "per-label") -> np.ndarray:
        probs = {"original_tta8": original}
        if second is not None:
            probs["dehazed_tta8"] = second
        return cv_scores(ValOutputs(own.names, own.targets, probs),
                         Setting("variant", post=replace(stored.shipped.post, dehaze=dehaze)),
                         labels=labels)

    rows = {"this model as shipped": baseline}
    for kind, p in theirs.items():
        if p is None:
            continue
        rows[f"the other's {kind} network as one more member"] = score(
            np.mean([*members, p], axis=0))
        rows[f"the other's {kind} network by the per-label choice"] = score(ours, p)
        rows[f"the other's {kind} network stacked in the layer"] = score(ours, p, "stack")
    table = {name: paired(scores, baseline) for name, scores in rows.items()}
    print(f"validation CV of {args.model} with {args.other} ({len(own.names)} images)")
    print("| networks | F2 | vs shipped |\n|---|---:|---:|")
    for name, row in table.items():
        print(f"| {name} | {row['f2']:.4f} | {row['diff']:+.4f} ± {row['diff_se']:.4f} |")
    return table


if __name__ == "__main__":
    main()

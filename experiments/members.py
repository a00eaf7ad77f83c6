"""Which ensemble members to keep: every subset of a model's original-image members,
scored by validation cross-validation (never by the test split).

    python -m experiments.members --model MODEL_DIR [--baseline original,original-6]

Each subset is averaged and scored by ``classifier.evaluation.cv_scores`` (5 folds x 2
shuffles of the stored validation outputs, the model's post-processing refitted per fold),
paired with ``--baseline`` (default: all members). Choosing the best of many noisy scores
flatters it: read the standard errors. A chosen subset becomes a model with
``python -m classifier assemble MODEL_DIR/original-K.pt ... --out NEW_DIR``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from itertools import combinations
from typing import Any

from tqdm import tqdm

from classifier.evaluation import Setting, cv_scores, paired
from classifier.postprocess import PostprocessConfig
from classifier.store import (
    CLASSIFIER_DIRS,
    VAL_OUTPUTS_FILE,
    ValOutputs,
    load_postprocessor,
    read_pipeline,
)


def member_subsets(val: ValOutputs, post: PostprocessConfig, baseline: Sequence[str] = (),
                   max_members: int | None = None,
                   labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every subset of the stored original-image members (up to ``max_members``), best
    first, each paired with ``baseline`` (default: all members); ``labels`` give the
    post-processing its tag-set rule, so subsets are scored as they would ship."""
    names = val.member_names("original")
    if not names:
        raise SystemExit("the model has one original-image network: no members to choose")
    unknown = sorted(set(baseline) - set(names))
    if unknown:
        raise SystemExit(f"no stored outputs of {', '.join(unknown)}; members: {', '.join(names)}")
    subsets = [tuple(s) for r in range(1, min(len(names), max_members or len(names)) + 1)
               for s in combinations(names, r)]
    reference = tuple(n for n in names if n in baseline) if baseline else tuple(names)
    scores = {subset: cv_scores(val.with_members("original", subset), Setting("subset", post=post),
                                labels=labels)
              for subset in tqdm({reference, *subsets}, desc="member subsets", unit="subset")}
    rows = [{"members": list(subset), **paired(scores[subset], scores[reference])}
            for subset in subsets]
    return sorted(rows, key=lambda row: -row["f2"])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="model directory, or 'default'")
    parser.add_argument("--baseline", default="", metavar="NAMES",
                        help="comma-separated members the others are compared with (default: all)")
    parser.add_argument("--max-members", type=int, default=None)
    args = parser.parse_args(argv)
    model_dir = CLASSIFIER_DIRS.resolve(args.model)
    val = ValOutputs.load(model_dir / VAL_OUTPUTS_FILE)
    spec = read_pipeline(model_dir)
    post = load_postprocessor(spec).config
    baseline = [name for name in args.baseline.split(",") if name]
    rows = member_subsets(val, post, baseline, args.max_members, spec["labels"])
    print(f"{len(val.targets)} validation images, 5 folds x 2 shuffles, post-processing "
          f"refitted per fold; vs {', '.join(baseline) or 'all members'} (± standard error)")
    for row in rows:
        print(f"{' + '.join(row['members']):50s} CV F2 {row['f2']:.4f}  "
              f"{row['diff']:+.4f} ± {row['diff_se']:.4f}")
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()

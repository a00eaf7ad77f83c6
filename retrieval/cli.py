"""Command line: ``python -m retrieval {train,evaluate,search,verify}``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from imagery.datasets import LabelTable, load_images, read_labels
from imagery.decode import ImageDecodeError, decode_image
from imagery.plots import pr_curves
from retrieval import pipeline
from retrieval.cutoffs import fit_cutoffs, write_cutoffs
from retrieval.data import Collection, load_collection
from retrieval.evaluation import TOP_K, evaluate_codes, label_queries, word_query_precision
from retrieval.retriever import Retriever
from retrieval.store import Database
from retrieval.text import UnknownQuery


def evaluate_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default="default")
    parser.add_argument("--labels", required=True)
    parser.add_argument("--captions", default=None)
    parser.add_argument("--images", required=True)
    parser.add_argument("--database-labels", default=None)
    parser.add_argument("--database-captions", default=None)
    parser.add_argument("--database-images", default=None)
    parser.add_argument("--plot", default=None, help="write precision-recall curves to this PNG")
    parser.add_argument("--json", default=None, help="also write the summary to this file")
    return parser


def search_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default="default")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--text")
    query.add_argument("--image")
    parser.add_argument("--side", choices=("image", "text"), default="image",
                        help="with --image: find images (default) or texts")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--bits", type=int, default=None)
    return parser


def verify_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default="default")
    parser.add_argument("--images", required=True,
                        help="folder or .tar with the database images")
    parser.add_argument("--n", type=int, default=500, help="database items to re-encode")
    return parser


def cutoffs_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default="default")
    parser.add_argument("--labels", required=True, help="Planet CSV with the images' tags")
    parser.add_argument("--images", required=True,
                        help="folder or .tar with the model's validation images")
    return parser


def cmd_cutoffs(args: argparse.Namespace) -> int:
    """Text search cut-offs (strong / weaker) from the model's validation split."""
    retriever = Retriever(args.model)
    table = read_labels(args.labels)
    wanted = set(retriever.spec["val_names"])
    rows = [i for i, name in enumerate(table.names) if name in wanted]
    if not rows:
        print(f"error: none of the model's validation images is in {args.labels}",
              file=sys.stderr)
        return 2
    data = load_images(table.subset(rows), args.images, retriever.image_size,
                       retriever.label_names)
    tags = [[name for name, on in zip(retriever.label_names, row) if on]
            for row in data.targets]
    found = fit_cutoffs(retriever, data.images, tags)
    write_cutoffs(retriever.model_dir, found,
                  {"command": "python -m retrieval " + " ".join(args.argv)})
    print(json.dumps({bits: {k: v[k] for k in ("strong", "weaker", "queries", "images")}
                      for bits, v in found.items()}))
    return 0


def database_from(retriever: Retriever, data: Collection) -> Database:
    """Codes of a collection given on the command line, as a search database."""
    image_x, text_x = vectors(retriever, data)
    return Database(data.names, data.labels, data.texts,
                    {b: retriever.models[b].image_codes(image_x) for b in retriever.bits},
                    {b: retriever.models[b].text_codes(text_x) for b in retriever.bits})


def vectors(retriever: Retriever, data: Collection) -> tuple[np.ndarray, np.ndarray]:
    return retriever.image_descriptors(list(data.images)), retriever.text_vectors(data.texts)


def cmd_train(args: argparse.Namespace) -> int:
    return 0 if pipeline.main(args) is not None else 1  # 1: paused by --max-epochs-this-run


def cmd_evaluate(args: argparse.Namespace) -> int:

    retriever = Retriever(args.model)
    queries = load_collection(args.labels, args.images, retriever.image_size, args.captions,
                              label_names=retriever.label_names, wording=retriever.wording)
    if args.database_labels:
        if not args.database_images:
            print("--database-labels needs --database-images", file=sys.stderr)
            return 2
        db_data = load_collection(args.database_labels, args.database_images,
                                  retriever.image_size, args.database_captions,
                                  label_names=retriever.label_names, wording=retriever.wording)
        database = database_from(retriever, db_data)
    else:
        database = retriever.database
    image_x, text_x = vectors(retriever, queries)
    results = {}
    words = label_queries(retriever.label_names)
    for bits in retriever.bits:
        model = retriever.models[bits]
        results[bits] = evaluate_codes(model.image_codes(image_x), model.text_codes(text_x),
                                       queries.labels, database.image_codes[bits],
                                       database.text_codes[bits], database.labels)
        results[bits]["words"] = word_query_precision(
            retriever.text_codes(words, bits, check=False), database.image_codes[bits],
            database.labels)
    print(f"{len(queries)} queries, database of {len(database.names)} items, "
          f"method {retriever.spec['method']}, text encoder {retriever.encoder.name}")
    print(f"{'bits':>5} {'MAP i2t':>8} {'MAP t2i':>8} {'MAP i2i':>8} "
          f"{f'i2t@{TOP_K}':>9} {f't2i@{TOP_K}':>9}")
    for bits, r in results.items():
        print(f"{bits:>5} {r['i2t']:8.4f} {r['t2i']:8.4f} {r['i2i']:8.4f} "
              f"{r[f'i2t@{TOP_K}']:9.4f} {r[f't2i@{TOP_K}']:9.4f}")
    prevalence = database.labels.mean(axis=0)
    print(f"\nlabel-name queries ('{words[0]}', ...) -> images, precision@{TOP_K} "
          f"(chance: the label's share of the database)")
    print(f"{'query':>20} {'chance':>7} " + " ".join(f"{b:>4}b" for b in results))
    for i, word in enumerate(words):
        print(f"{word:>20} {prevalence[i]:7.3f} "
              + " ".join(f"{r['words'][i]:5.3f}" for r in results.values()))
    print(f"{'mean':>20} {prevalence.mean():7.3f} "
          + " ".join(f"{r['words'].mean():5.3f}" for r in results.values()))
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        pr_curves(results, Path(args.plot), f"{retriever.spec['method']} on "
                f"{len(queries)} queries")
        print(f"precision-recall curves: {args.plot}")
    summary = {
        "map": {task: {str(b): round(r[task], 4) for b, r in results.items()}
                for task in ("i2t", "t2i", "i2i")},
        f"map@{TOP_K}": {task: {str(b): round(r[f"{task}@{TOP_K}"], 4)
                                for b, r in results.items()} for task in ("i2t", "t2i")},
        f"label_query_precision@{TOP_K}": {str(b): round(float(r["words"].mean()), 4)
                                            for b, r in results.items()},
        "method": retriever.spec["method"], "n_queries": len(queries),
        "n_database": len(database.names),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-encode the first ``--n`` database items and compare with the stored codes: after
    an upgrade (torch, the classifier, a backbone file) the stored database only stays
    valid if the model still gives the same codes."""

    retriever = Retriever(args.model)
    db = retriever.database
    n = min(args.n, len(db.names))
    table = LabelTable(db.names[:n], [[] for _ in range(n)])
    data = load_images(table, args.images, retriever.image_size, retriever.label_names)
    if not len(data.names):
        print(f"error: none of the first {n} database images is in {args.images}",
              file=sys.stderr)
        return 2
    position = {name: i for i, name in enumerate(table.names)}
    rows = [position[name] for name in data.names]
    image_x = retriever.image_descriptors(list(data.images))
    text_x = retriever.text_vectors([db.texts[i] for i in rows])
    report: dict[str, dict[str, float]] = {}
    for bits in retriever.bits:
        model = retriever.models[bits]
        for side, codes, stored in (("image", model.image_codes(image_x), db.image_codes),
                                    ("text", model.text_codes(text_x), db.text_codes)):
            same = (codes == stored[bits][rows]).all(axis=1)
            report.setdefault(side, {})[str(bits)] = round(float(same.mean()), 4)
    print(f"{len(rows)} database items re-encoded ({len(data.errors)} images unreadable)")
    for side, shares in report.items():
        print(f"{side} codes identical to the stored ones: "
              + ", ".join(f"{b} bits {v:.1%}" for b, v in shares.items()))
    ok = all(v == 1.0 for shares in report.values() for v in shares.values())
    print(json.dumps({"identical": report, "n_items": len(rows), "ok": ok}))
    return 0 if ok else 1


def cmd_search(args: argparse.Namespace) -> int:

    retriever = Retriever(args.model)
    bits = args.bits or max(retriever.bits)
    if bits not in retriever.bits:
        print(f"this model has {retriever.bits} bit codes", file=sys.stderr)
        return 2
    try:
        if args.text is not None:
            unknown = retriever.vocabulary.check(args.text)
            if unknown:
                print(f"ignored (never seen in training): {', '.join(unknown)}")
            hits = retriever.search_text(args.text, args.k, bits)
        else:
            image = decode_image(args.image)
            hits = retriever.search_image(image, args.k, bits, side=args.side)
    except UnknownQuery as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ImageDecodeError as exc:
        print(f"error: {args.image}: {exc}", file=sys.stderr)
        return 1
    for hit in hits:
        text = hit.text if len(hit.text) < 90 else hit.text[:87] + "..."
        print(f"{hit.distance:3d}  {hit.name:30s} {text}")
    return 0


class Command(NamedTuple):
    help: str
    arguments: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]


COMMANDS = {
    "train": Command("train hashing networks (resumable)", pipeline.get_args_parser,
                     cmd_train),
    "evaluate": Command("MAP and PR curves of a model", evaluate_args, cmd_evaluate),
    "search": Command("text -> images, image -> images or texts", search_args, cmd_search),
    "verify": Command("do the model's codes still match its stored database?", verify_args,
                      cmd_verify),
    "cutoffs": Command("text search cut-offs (strong / weaker) chosen on validation",
                       cutoffs_args, cmd_cutoffs),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrieval",
                                     description="Cross-modal hashing: train, evaluate, search")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.arguments(sub.add_parser(name, help=command.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in the model's provenance
    return COMMANDS[args.command].run(args)

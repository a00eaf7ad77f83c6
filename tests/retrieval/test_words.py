"""A retrieval model's words are data that travel with it: the stopwords and the everyday
words for each label (``stopwords.json``, ``label_words.json`` in the model directory),
read when the model loads and written by training."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from retrieval.cli import main
from retrieval.retriever import Retriever
from retrieval.store import RETRIEVAL_DIRS, Database
from retrieval.text import LABEL_WORDS_FILE, STOPWORDS_FILE, default_wording
from tests.retrieval.items import TINY_MODEL, write_items

# The shipped model's spec predates the word files and its version must not change (the
# app keys stored search codes on it), so these digests guard its words instead: other
# words give other text codes under the same version.
SHIPPED = {STOPWORDS_FILE: "4e059c18b69b33f0ae3e2e98e65dec89189188f09a74bc5fb319507839717109",
           LABEL_WORDS_FILE: "eb7781b87d4ea5591335e50ebfe9e4618f9a6ceea69bedcc04dd53b5216b41c6"}


def test_the_shipped_model_carries_the_words_it_was_trained_with() -> None:
    assert RETRIEVAL_DIRS.version("default") == "default_model-b466a48469df"
    for name, digest in SHIPPED.items():
        path = RETRIEVAL_DIRS.resolve("default") / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
    retriever = Retriever("default")
    assert retriever.tags_text(["partly_cloudy", "primary", "water"]) == (
        "partly cloudy clouds primary rainforest forest trees jungle water river lake")
    assert retriever.vocabulary.split("a river near the slash and burn") == (
        ["river", "slash", "burn"], [])


def _copy(model: Path, to: Path) -> Path:
    """The model's JSON and word files copied, its weights and database linked."""
    to.mkdir()
    for path in model.iterdir():
        if path.suffix == ".json":
            (to / path.name).write_bytes(path.read_bytes())
        else:
            (to / path.name).symlink_to(path)
    return to


def test_a_model_reads_its_words_from_its_own_directory(tmp_path: Path) -> None:
    model = _copy(RETRIEVAL_DIRS.resolve("default"), tmp_path / "model")
    label_words = json.loads((model / LABEL_WORDS_FILE).read_text())
    label_words["water"].append("sea")
    (model / LABEL_WORDS_FILE).write_text(json.dumps(label_words))
    stopwords = json.loads((model / STOPWORDS_FILE).read_text())
    (model / STOPWORDS_FILE).write_text(json.dumps([*stopwords, "river"]))

    retriever = Retriever(model)
    assert retriever.tags_text(["water"]) == "water river lake sea"
    assert retriever.vocabulary.split("river lake") == (["lake"], [])
    assert not retriever.text_vectors(["river"]).any()  # the bag of words drops it too
    assert Retriever("default").text_vectors(["river"]).any()


def test_training_writes_its_words_into_the_model_and_refuses_edited_ones(
        tmp_path: Path) -> None:
    data = write_items(tmp_path)  # tags: bright, reddish, striped
    words = tmp_path / "words.json"
    words.write_text(json.dumps({"bright": ["bright", "sunny"], "striped": ["stripes"]}))
    out = tmp_path / "model"
    assert main(["train", "--labels", str(data["labels"]), "--images", str(data["images"]),
                 "--out", str(out), "--label-words", str(words), *TINY_MODEL]) == 0

    assert json.loads((out / LABEL_WORDS_FILE).read_text()) == json.loads(words.read_text())
    assert (set(json.loads((out / STOPWORDS_FILE).read_text()))
            == default_wording().stopwords)
    spec = json.loads((out / "retrieval.json").read_text())
    assert set(spec["words"]) == {STOPWORDS_FILE, LABEL_WORDS_FILE}
    texts = set(Database.load(out / "database.npz").texts)
    assert texts <= {"bright sunny", "reddish", "stripes", "bright sunny reddish",
                     "bright sunny stripes", "reddish stripes", "bright sunny reddish stripes"}
    retriever = Retriever(out)
    assert retriever.vocabulary.check("sunny stripes") == []
    assert retriever.tags_text(["striped", "reddish"]) == "stripes reddish"

    (out / LABEL_WORDS_FILE).write_text(json.dumps({"bright": ["dark"]}))
    with pytest.raises(ValueError, match="not the file this model was trained with"):
        Retriever(out)

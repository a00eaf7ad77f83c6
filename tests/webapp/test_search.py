"""Cross-modal search in the app: codes for images, text/image/similar/describe search in
the API and the browser. A tiny retrieval model is trained for the module on generated
chips (texts from Planet tags, the shipped classifier as backbone)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image as PILImage
from rest_framework.test import APIClient

from retrieval import read_cutoffs
from retrieval.cli import main as retrieval_main
from tests.webapp.conftest import make_image
from tests.webapp.helpers import predicted_image
from webapp.models import Image, ImageCode
from webapp.services import search

KINDS = {"water": ["water", "primary", "clear"], "farm": ["agriculture", "clear", "road"],
         "cloud": ["cloudy"]}


def _chip(kind: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    base = {"water": (40, 60, 140), "farm": (150, 120, 70), "cloud": (235, 235, 235)}[kind]
    pixels = np.clip(rng.normal(base, 15, (32, 32, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def retrieval_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("retrieval-data")
    rows = []
    with tarfile.open(root / "images.tar", "w") as archive:
        for i in range(90):
            kind = list(KINDS)[i % 3]
            data = _chip(kind, i)
            info = tarfile.TarInfo(f"chips/{kind}_{i}.png")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            rows.append(f"{kind}_{i}," + " ".join(KINDS[kind]))
    (root / "labels.csv").write_text("image_name,tags\n" + "\n".join(rows) + "\n")
    out = tmp_path_factory.mktemp("retrieval-model")
    assert retrieval_main(["train", "--labels", str(root / "labels.csv"), "--images",
                           str(root / "images.tar"), "--out", str(out), "--backbone", "default",
                           "--text-encoder", "bow", "--bits", "16,32", "--epochs", "12",
                           "--batch-size", "16", "--val-fraction", "0.2", "--threads", "1"]) == 0
    # relevance cut-offs of text search, chosen on the model's own validation split
    assert retrieval_main(["cutoffs", "--model", str(out), "--labels",
                           str(root / "labels.csv"), "--images", str(root / "images.tar")]) == 0
    return out


@pytest.fixture
def use_model(retrieval_dir, settings):
    settings.RETRIEVAL_MODEL = str(retrieval_dir)
    settings.RETRIEVAL_BITS = 32
    search._retrievers.clear()
    search._cutoffs.clear()
    search._indexes.clear()
    yield retrieval_dir
    search._indexes.clear()


@pytest.fixture
def collection(use_model, user):
    """Ready images of each kind, with labels, encoded for search."""
    images = {}
    for i in range(12):
        kind = list(KINDS)[i % 3]
        image = predicted_image_with_pixels(user, kind, 1000 + i)
        images.setdefault(kind, []).append(image)
    ids = [im.pk for group in images.values() for im in group]
    assert search.encode_images(ids) == len(ids)
    return images


def predicted_image_with_pixels(owner, kind: str, seed: int):
    """A ready image whose pixels and tags match its kind."""
    from tests.webapp.helpers import predict, upload

    _, items = upload(owner, [(f"{kind}{seed}.png", _chip(kind, seed))])
    predict(items[0].image, KINDS[kind])
    items[0].image.refresh_from_db()
    return items[0].image


@pytest.mark.django_db
def test_every_ready_image_gets_codes_and_rebuild_index_redoes_them(collection):
    assert ImageCode.objects.count() == 12
    code = ImageCode.objects.first()
    assert code.bits == 32 and code.model == search.model_version()
    ImageCode.objects.all().delete()
    call_command("rebuild_index", "--missing-only")
    assert ImageCode.objects.count() == 12


@pytest.mark.django_db
def test_text_search_ranks_matching_images_first(collection, client, api):
    response = api.get("/api/search/", {"q": "river water", "k": 12})
    assert response.status_code == 200, response.content
    body = response.json()
    distances = [r["distance"] for r in body["results"]]
    strengths = [r["strength"] for r in body["results"]]
    # strong matches first, each group nearest first; nothing beyond the weaker cut-off
    assert strengths == sorted(strengths, key=["strong", "weaker"].index)
    for group in ("strong", "weaker"):
        within = [d for d, s in zip(distances, strengths) if s == group]
        assert within == sorted(within)
    cutoff = read_cutoffs(search.retriever().model_dir)[str(search.code_bits())]
    assert max(distances) <= cutoff["weaker"] and 4 <= len(distances) <= 12
    assert all(s == "strong" for d, s in zip(distances, strengths) if d <= cutoff["strong"])
    top = [r["tags"] for r in body["results"][:4]]
    assert sum("water" in tags for tags in top) >= 3, top
    assert body["ignored_words"] == []
    # the browser shows the same ranking, named strong / weaker
    page = client.get("/gallery/", {"q": "river water"})
    assert page.status_code == 200 and b'class="match weaker"' in page.content
    assert f"{strengths.count('weaker')} weaker matches".encode() in page.content


@pytest.mark.django_db
def test_results_beyond_the_cutoff_are_dropped_and_doubtful_images_come_last(collection):
    """Cut-offs chosen on validation name each result; an unusual image (or a mostly
    padded tile) comes after the others of its group."""
    matches, _ = search.search_text("river water", k=12)
    cutoff = read_cutoffs(search.retriever().model_dir)[str(search.code_bits())]
    assert all(m.distance <= cutoff["weaker"] for m in matches)
    first = matches[0]
    Image.objects.filter(pk=first.image_id).update(unusual=True)
    again, _ = search.search_text("river water", k=12)
    group = [m.image_id for m in again if m.strength == first.strength]
    assert group[-1] == first.image_id and len(again) == len(matches)


@pytest.mark.django_db
def test_unknown_words_get_a_clear_message_not_results(collection, client, api):
    response = api.get("/api/search/", {"q": "zebra giraffe"})
    assert response.status_code == 400
    assert "try words such as" in response.json()["detail"]
    partly = api.get("/api/search/", {"q": "zebra water"}).json()
    assert partly["ignored_words"] == ["zebra"] and partly["results"]
    assert api.get("/api/search/").status_code == 400
    page = client.get("/gallery/", {"q": "zebra giraffe"})
    assert page.status_code == 200 and b"try words such as" in page.content


@pytest.mark.django_db
def test_similar_images_exclude_the_image_and_are_sorted(collection, client, api):
    anchor = collection["cloud"][0]
    body = api.get(f"/api/images/{anchor.pk}/similar/", {"k": 5}).json()
    ids = [r["id"] for r in body["results"]]
    distances = [r["distance"] for r in body["results"]]
    assert anchor.pk not in ids and len(ids) == 5 and distances == sorted(distances)
    page = client.get("/gallery/", {"similar": anchor.pk})
    assert page.status_code == 200 and b"most similar to" in page.content


@pytest.mark.django_db
def test_describe_returns_nearest_texts(collection, client, api):
    image = collection["water"][0]
    body = api.get(f"/api/images/{image.pk}/describe/", {"k": 3}).json()
    assert 1 <= len(body["texts"]) <= 3
    assert [t["distance"] for t in body["texts"]] == sorted(t["distance"] for t in body["texts"])
    page = client.get(f"/images/{image.pk}/")
    assert b"Find similar images" in page.content and b"nearest texts" in page.content


@pytest.mark.django_db
def test_search_by_uploaded_image_needs_login_and_a_real_image(collection, api):
    data = _chip("farm", 5)
    assert APIClient().post("/api/search/", {"file": SimpleUploadedFile("q.png", data)},
                            format="multipart").status_code in (401, 403)
    response = api.post("/api/search/", {"file": SimpleUploadedFile("q.png", data)},
                        format="multipart")
    assert response.status_code == 200
    assert len(response.json()["results"]) == 12
    bad = api.post("/api/search/", {"file": SimpleUploadedFile("q.png", make_image("text"))},
                   format="multipart")
    assert bad.status_code == 400 and "not an image" in bad.json()["detail"]


@pytest.mark.django_db
def test_retagging_changes_the_text_code(collection, curator):
    from webapp.services.curation import set_labels

    image = collection["farm"][0]
    before = ImageCode.objects.get(image=image).text_code
    set_labels(image, ["cloudy"], curator)
    search.encode_images([image.pk])
    assert ImageCode.objects.get(image=image).text_code != before


@pytest.mark.django_db
def test_without_a_retrieval_model_search_says_so(settings, user, client, api):
    settings.RETRIEVAL_MODEL = "/nonexistent/model"
    image = predicted_image(user, 1, ["water"])
    assert api.get("/api/search/", {"q": "water"}).status_code == 503
    assert api.get(f"/api/images/{image.pk}/similar/").status_code == 503
    page = client.get("/gallery/", {"q": "water"})
    assert page.status_code == 200 and b"not available" in page.content


@pytest.mark.django_db
def test_indexes_apply_only_what_changed_since_their_last_version(collection, user, settings,
                                                                  monkeypatch):
    """A process's indexes are not reloaded when codes change: they read the rows changed
    since their last sync (and the tombstones of removed ones), then answer with them."""
    settings.SEARCH_SYNC_OVERLAP = 0.0
    by_image = search._collection_index()  # loaded once
    assert len(by_image) == 12
    applied = []
    real_upsert = type(by_image).upsert_packed
    monkeypatch.setattr(type(by_image), "upsert_packed",
                        lambda self, ids, codes: applied.append(list(ids))
                        or real_upsert(self, ids, codes))
    newcomer = predicted_image_with_pixels(user, "water", 77)
    search.encode_images([newcomer.pk])
    anchor = collection["water"][0]
    found = [m.image_id for m in search.similar_images(anchor, k=20)]
    assert newcomer.pk in found
    assert applied == [[newcomer.pk]]  # one row read and applied, not the collection
    assert search._collection_index() is by_image  # the same index, updated in place

    gone = collection["water"][1]
    gone.delete()  # its code row goes with it; the tombstone tells every process
    found = [m.image_id for m in search.similar_images(anchor, k=20)]
    assert gone.pk not in found and len(by_image) == 12


@pytest.mark.django_db(transaction=True)
def test_preload_loads_the_model_and_index_single_threaded_and_lets_go_of_the_database(
        collection, settings, monkeypatch):
    """What the gunicorn master runs before it forks (webapp.wsgi, SEARCH_PRELOAD): the
    index of every code, loaded with torch on one thread (no OpenMP pool to inherit),
    the thread count restored, and no database connection left for a child to share."""
    import torch
    from django.db import DatabaseError, connection

    threads = torch.get_num_threads()
    seen = []
    real = search._collection_index
    monkeypatch.setattr(search, "_collection_index",
                        lambda: seen.append(torch.get_num_threads()) or real())
    assert search.preload() is True
    assert seen == [1] and torch.get_num_threads() == threads
    assert connection.connection is None  # closed: a forked worker opens its own
    key = (search.model_version(), search.code_bits())
    assert len(search._indexes[key].by_image) == 12
    # a database not migrated yet: the first search loads the index instead
    monkeypatch.setattr(search, "_collection_index",
                        lambda: (_ for _ in ()).throw(DatabaseError("no such table")))
    assert search.preload() is False and torch.get_num_threads() == threads
    # nor does a model that fails to load keep the web server from starting
    monkeypatch.setattr(search, "_collection_index",
                        lambda: (_ for _ in ()).throw(RuntimeError("corrupt weights")))
    assert search.preload() is False
    settings.RETRIEVAL_MODEL = "/nonexistent/model"
    assert search.preload() is False


def test_index_sync_goes_by_the_database_clock_not_the_writers(collection, user, settings,
                                                                monkeypatch):
    """A writer whose clock runs an hour behind (another machine) still has its codes
    picked up: change times and sync points both come from the database."""
    from datetime import timedelta

    from django.utils import timezone

    settings.SEARCH_SYNC_OVERLAP = 0.0
    by_image = search._collection_index()
    assert len(by_image) == 12
    newcomer = predicted_image_with_pixels(user, "water", 78)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() - timedelta(hours=1))
    search.encode_images([newcomer.pk])
    monkeypatch.undo()
    found = [m.image_id for m in search.similar_images(collection["water"][0], k=20)]
    assert newcomer.pk in found and len(by_image) == 13
    gone = collection["water"][1]
    monkeypatch.setattr(timezone, "now", lambda: real_now() - timedelta(hours=1))
    gone.delete()  # the tombstone too is stamped by the database
    monkeypatch.undo()
    found = [m.image_id for m in search.similar_images(collection["water"][0], k=20)]
    assert gone.pk not in found and len(by_image) == 12


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", [10, 500])
def test_search_results_take_the_same_queries_whatever_the_page_size(
        collection, api, curator, page_size, django_assert_max_num_queries):
    from webapp.services.curation import set_labels

    for group in collection.values():
        for image in group:
            set_labels(image, ["water", "road"], curator)  # person labels name their adder
    search.encode_images([im.pk for group in collection.values() for im in group])
    with django_assert_max_num_queries(14):
        response = api.get("/api/search/", {"q": "water", "k": 12, "page_size": page_size})
    assert response.status_code == 200
    assert len(response.json()["results"]) == min(12, page_size)


def test_the_search_box_examples_are_queries_the_model_understands() -> None:
    """The gallery's example queries use only words the shipped search model knows (an
    example answered with "Ignored words" teaches the wrong thing)."""
    import re
    from pathlib import Path

    from retrieval import Retriever

    html = (Path(__file__).resolve().parents[2] / "templates/webapp/gallery.html").read_text()
    placeholder = re.search(r'name="q"[^>]*placeholder="Search by text, e\.g\. ([^"]+)"',
                            html).group(1)
    examples = [q.strip() for q in placeholder.split(";")]
    assert len(examples) >= 2
    vocabulary = Retriever("default").vocabulary
    assert {q: vocabulary.check(q) for q in examples} == {q: [] for q in examples}

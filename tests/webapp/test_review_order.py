"""What to review next (issue 22, part 6): the informative order mixes uncertainty with
diversity over the search codes; a label narrows the queue to images likely to carry it."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.webapp.conftest import make_image
from tests.webapp.helpers import predict, upload
from webapp.models import Image, ImageCode
from webapp.services import review_order, search


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def clusters(owner) -> dict[str, list[int]]:
    """Three kinds of images, as their search codes see them: A (5 near-copies, the
    least certain), B (3) and C (3), each kind's codes within 2 bits of each other and
    about 32 bits from the other kinds."""
    kinds = {"A": (0x0000_0000_0000_0000, 0.05), "B": (0x0000_0000_FFFF_FFFF, 0.30),
             "C": (0x7FFF_FFFF_0000_0000, 0.50)}
    sizes = {"A": 5, "B": 3, "C": 3}
    found: dict[str, list[int]] = {}
    seed = 300
    for kind, (base, confidence) in kinds.items():
        for i in range(sizes[kind]):
            seed += 1
            _, (item,) = upload(owner, [(f"k{seed}.png", make_image("png", seed=seed))])
            image = Image.objects.get(pk=item.image_id)
            predict(image, ["clear", "primary"], confidence + i * 0.001,
                    {"water": 0.9 if kind == "C" else 0.1}, display=False)
            ImageCode.objects.update_or_create(image=image, defaults={
                "model": search.model_version(), "bits": 64,
                "image_code": base ^ (1 << i), "text_code": 0})
            found.setdefault(kind, []).append(image.pk)
    return found


def kind_of(found: dict[str, list[int]], image_id: int) -> str:
    return next(kind for kind, ids in found.items() if image_id in ids)


@pytest.mark.django_db
def test_informative_covers_every_kind_before_repeating_one(user, media):
    found = clusters(user)
    uncertain = review_order.review_queue(user, "uncertain", limit=3)
    assert [kind_of(found, i.pk) for i in uncertain] == ["A", "A", "A"]
    informative = review_order.review_queue(user, "informative", limit=3)
    assert [kind_of(found, i.pk) for i in informative] == ["A", "B", "C"]
    assert informative[0].pk == uncertain[0].pk  # the least certain image starts both
    # all 11, each once, reviewed images never
    Image.objects.filter(pk=found["B"][0]).update(reviewed=True)
    every = [i.pk for i in review_order.review_queue(user, "informative", limit=50)]
    assert len(every) == len(set(every)) == 10 and found["B"][0] not in every


@pytest.mark.django_db
def test_a_label_narrows_the_queue_to_images_likely_to_carry_it(user, media):
    found = clusters(user)
    likely = review_order.review_queue(user, "uncertain", label="water", limit=3)
    assert {kind_of(found, i.pk) for i in likely} == {"C"}
    with pytest.raises(review_order.ReviewOrderRefused):
        review_order.review_queue(user, label="no_such_label")


@pytest.mark.django_db
def test_a_label_looks_among_the_scan_least_certain_unreviewed_images(user, media,
                                                                     monkeypatch):
    """The label's candidates come from the SCAN least certain unreviewed images (bounded
    work at a million images)."""
    found = clusters(user)  # water likely on C only, the most certain kind (0.50)
    monkeypatch.setattr(review_order, "SCAN", 8)  # A (5) and B (3): no C among them
    assert review_order.review_queue(user, "uncertain", label="water") == []
    monkeypatch.setattr(review_order, "SCAN", 9)  # the least certain C comes in
    assert [i.pk for i in review_order.review_queue(user, "uncertain", label="water")] == \
        [found["C"][0]]
    Image.objects.filter(pk=found["A"][0]).update(reviewed=True)  # reviewed: out of SCAN
    assert [i.pk for i in review_order.review_queue(user, "uncertain", label="water")] == \
        found["C"][:2]


@pytest.mark.django_db
def test_the_review_endpoint(user, media):
    found = clusters(user)
    api = APIClient()
    api.force_authenticate(user)
    data = api.get("/api/images/review/?order=informative&limit=3").json()
    assert [kind_of(found, row["id"]) for row in data] == ["A", "B", "C"]
    assert api.get("/api/images/review/?order=sideways").status_code == 400
    assert api.get("/api/images/review/?label=nothing_here").status_code == 400

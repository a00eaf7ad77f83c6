"""Images unlike the training imagery (issue 23, part 2): the prediction's novelty score
reaches the image, which is flagged on its page, in the gallery and the API, and can be
filtered."""

from __future__ import annotations

import pytest

from classifier.predictor import Prediction as ModelOutput
from tests.webapp.conftest import make_image
from tests.webapp.helpers import finish, upload
from webapp.models import Image
from webapp.services.model_registry import active_model
from webapp.services.recognition import store_predictions


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def tagged(owner, seed: int, novelty: float, unusual: bool) -> Image:
    batch, (item,) = upload(owner, [(f"n{seed}.png", make_image("png", seed=seed))])
    image = Image.objects.get(pk=item.image_id)
    store_predictions([image], active_model(), {image.pk: ModelOutput(
        {"clear": 0.9}, ["clear"], 0.5, novelty=novelty, unusual=unusual)})
    finish(batch)
    return Image.objects.get(pk=image.pk)


@pytest.mark.django_db
def test_unusual_images_are_flagged_and_filtered(user, client, api, media):
    odd = tagged(user, 1, 7.5, True)
    plain = tagged(user, 2, 0.9, False)
    assert (odd.unusual, odd.novelty, plain.unusual) == (True, 7.5, False)
    assert odd.prediction.novelty == 7.5 and odd.prediction.unusual
    rows = api.get("/api/images/?unusual=true").json()["results"]
    assert [r["id"] for r in rows] == [odd.pk] and rows[0]["novelty"] == 7.5
    assert [r["id"] for r in api.get("/api/images/?unusual=false").json()["results"]] == \
        [plain.pk]
    assert api.get("/api/images/?unusual=maybe").status_code == 400
    page = client.get("/gallery/?unusual=true").content.decode()
    assert "unusual-badge" in page and f'data-image-id="{odd.pk}"' in page
    assert f'data-image-id="{plain.pk}"' not in page
    assert 'id="unusual"' in client.get(f"/images/{odd.pk}/").content.decode()
    assert 'id="unusual"' not in client.get(f"/images/{plain.pk}/").content.decode()

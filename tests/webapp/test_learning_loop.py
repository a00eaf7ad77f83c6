"""The learning loop (issue 22, parts 3-5): a training job fine-tunes the active model on
the curated train images and ends as a candidate; the comparison on the evaluation images
is right; activation re-tags the unreviewed images exactly once; rollback restores them.

Trainings here run the shipped model's real networks on a few synthetic chips whose look
follows their labels (tests.synthetic), for one or two short epochs."""

from __future__ import annotations

import csv
import io
import time

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from tests.synthetic import chip
from tests.webapp.helpers import label_names, predict, second_model, upload
from webapp.models import Image, Label, ModelVersion, Prediction, RetagJob, TrainingJob
from webapp.services import activation, comparison, curation, trainings
from webapp.services.model_registry import active_model

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINING_DIR = str(tmp_path / "trainings")
    settings.MIN_LABEL_POSITIVES = 4
    settings.TRAINING_MIN_IMAGES = 10
    return settings.MEDIA_ROOT


@pytest.fixture
def operator(db) -> User:
    """A curator who may also activate models (change_modelversion)."""
    from django.contrib.auth.models import Group

    person = User.objects.create_user("operator", password="pw-operator-1")
    person.groups.add(Group.objects.get(name="curators"))
    person.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    return User.objects.get(pk=person.pk)


def _png(tags: set[str], seed: int) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    chip(np.random.default_rng(seed), tags).save(buffer, "PNG")
    return buffer.getvalue()


def curated_collection(curator, count: int = 36, evaluation: int = 10) -> list[Image]:
    """``count`` chips, predicted by the shipped model's stand-in tags, reviewed with the
    labels their look follows ("striped" is new to the model); the first ``evaluation``
    are moved to the evaluation set, the rest to train."""
    Label.objects.get_or_create(name="striped")
    looks = [{"striped"} if i % 2 else set() for i in range(count)]
    _, items = upload(curator, [(f"c{i}.png", _png(looks[i], 500 + i)) for i in range(count)])
    images = [Image.objects.get(pk=item.image_id) for item in items]
    for image in images:
        predict(image, ["clear", "primary"])
    for i, image in enumerate(images):
        curation.set_labels(image, ["clear", "primary", *sorted(looks[i])], curator)
    ids = [image.pk for image in images]
    Image.objects.filter(pk__in=ids[:evaluation]).update(split="evaluation")
    Image.objects.filter(pk__in=ids[evaluation:]).update(split="train")
    return [Image.objects.get(pk=i) for i in ids]


def test_a_training_ends_as_a_candidate_never_trained_on_evaluation_images(curator, media):
    images = curated_collection(curator)
    unreviewed = predict_unreviewed(curator)
    job = trainings.do_create(curator, epochs=1)
    assert job.status == "queued" and job.labels == ["clear", "primary", "striped"]
    job = trainings.run(job.pk)
    assert job.status == "done", job.error
    assert job.progress == 1.0 and job.epoch == 2 and job.epochs == 2  # 2 networks x 1
    assert [row["network"] for row in job.history] == ["original-1", "original-3"]
    candidate = job.result
    assert candidate.state == "candidate" and not candidate.is_active
    assert candidate.labels == ["clear", "primary", "striped"]
    assert candidate.card["images"]["train_images"] == 26
    assert candidate.card["commands"][0].startswith("python -m classifier train")
    # the data set held train images only: never an evaluation image (nor an unreviewed one)
    data = trainings.training_dir(job) / "data" / "labels.csv"
    with open(data, newline="") as handle:
        trained = {int(row["image_name"][4:]) for row in csv.DictReader(handle)}
    evaluation = {image.pk for image in images if image.split == "evaluation"}
    assert trained and not trained & evaluation and unreviewed.pk not in trained
    assert trained == {image.pk for image in images if image.split == "train"}
    # both models predicted every evaluation image, so the comparison covers them all
    result = comparison.compare(candidate, active_model())
    assert result["evaluation_images"] == 10 and result["missing"] == {"candidate": 0,
                                                                       "active": 0}
    striped = next(row for row in result["labels"] if row["label"] == "striped")
    assert striped["support"] == 5 and striped["f2_active"] is None  # unknown to it
    assert striped["f2_candidate"] is not None


def predict_unreviewed(owner, seed: int = 999) -> Image:
    """One more train image, predicted but reviewed by nobody."""
    _, (item,) = upload(owner, [(f"loose{seed}.png", _png({"striped"}, seed))])
    image = Image.objects.get(pk=item.image_id)
    predict(image, ["clear", "primary"])
    Image.objects.filter(pk=image.pk).update(split="train")
    return image


def test_a_training_is_refused_without_enough_reviewed_positives(curator, user, media):
    curated_collection(curator, count=12, evaluation=4)  # 4 striped in train: enough
    with pytest.raises(trainings.TrainingRefused, match="too few reviewed positives"):
        Label.objects.create(name="solar_farm")
        trainings.do_create(curator, labels=["striped", "solar_farm"])
    with pytest.raises(trainings.TrainingRefused) as refused:
        trainings.do_create(user)
    assert refused.value.forbidden
    with pytest.raises(trainings.TrainingRefused, match="epochs"):
        trainings.do_create(curator, epochs=0)


def test_the_comparison_is_right_on_hand_checked_predictions(curator, media):
    """Three evaluation images, truth {a}, {a, b}, {b}: the candidate predicts {a}, {a, b},
    {a}; the other model {a, b}, {a}, {} and does not know b at all for the last."""
    for name in ("a", "b"):
        Label.objects.create(name=name)
    cand = ModelVersion.objects.create(version="cand-1", name="cand", path="x",
                                       labels=["a", "b"])
    other = ModelVersion.objects.create(version="other-1", name="other", path="x",
                                        labels=["a"])
    truths, cand_tags, other_tags = [["a"], ["a", "b"], ["b"]], [["a"], ["a", "b"], ["a"]], \
        [["a"], ["a"], []]
    _, items = upload(curator, [(f"e{i}.png", _png(set(), 50 + i)) for i in range(3)])
    for item, truth, c, o in zip(items, truths, cand_tags, other_tags):
        image = Image.objects.get(pk=item.image_id)
        predict(image, ["clear"])
        curation.set_labels(image, truth, curator)
        Image.objects.filter(pk=image.pk).update(split="evaluation")
        Prediction.objects.create(image=image, model=cand, tags=c, confidence=0.5,
                                  probabilities={t: 0.9 for t in c})
        Prediction.objects.create(image=image, model=other, tags=o, confidence=0.5,
                                  probabilities={t: 0.9 for t in o})
    result = APIClient()
    result.force_authenticate(curator)
    data = result.get(f"/api/models/{cand.pk}/compare/?against={other.pk}").json()
    # per image F2: candidate 1, 1, 0; other 1, 5/9 (tp 1, fn 1), 0 (nothing found)
    assert data["evaluation_images"] == 3
    assert data["f2"]["candidate"] == pytest.approx(2 / 3, abs=1e-4)
    assert data["f2"]["active"] == pytest.approx((1 + 5 / 9) / 3, abs=1e-4)
    assert data["f2"]["difference"] == pytest.approx((1 - 5 / 9) / 3, abs=1e-4)
    low, high = data["f2"]["interval"]
    assert low <= data["f2"]["difference"] <= high
    rows = {row["label"]: row for row in data["labels"]}
    assert rows["b"]["support"] == 2 and rows["b"]["f2_active"] is None
    assert rows["b"]["recall_candidate"] == 0.5 and rows["b"]["precision_candidate"] == 1.0
    assert rows["a"]["precision_candidate"] == pytest.approx(2 / 3, abs=1e-4)
    assert [d["truth"] for d in data["disagreements"]] == [["a", "b"]]
    assert result.get(f"/api/models/{cand.pk}/compare/?against=0").status_code == 400


class CountingPredictor:
    """The model's outputs stood in by a rule (every image: the tags given), counting
    images: re-tagging must predict each image once per model."""

    image_size = 32

    def __init__(self, tags: list[str]) -> None:
        self.tags, self.seen = tags, 0

    def predict(self, inputs, features: bool = False):
        from tests.webapp.helpers import output

        self.seen += len(inputs)
        return [output(self.tags, 0.8) for _ in inputs]


def test_retagging_changes_exactly_the_unreviewed_images_once_and_rollback_restores(
        curator, operator, media, monkeypatch):
    old = active_model()
    reviewed = curated_collection(curator, count=3, evaluation=0)
    loose = [predict_unreviewed(curator, seed=900 + i) for i in range(4)]
    # a person's label on an unreviewed image stays through every re-tagging
    curation.add_label(Image.objects.filter(pk=loose[0].pk), Label.objects.get(name="striped"),
                       curator)
    before = {image.pk: label_names(image) for image in Image.objects.all()}
    assert before[loose[1].pk] == {"clear", "primary"}
    new = second_model()
    predictors = {new.version: CountingPredictor(["haze", "water"]),
                  old.version: CountingPredictor(["cloudy"])}
    monkeypatch.setattr("webapp.services.recognition.predictor_for",
                        lambda model: predictors[model.version])
    job = activation.do_activate(new, operator, retag=True)
    assert job.total == 4
    job = activation.run_retag(job.pk, chunk_size=3)
    assert (job.status, job.done, job.predicted) == ("done", 4, 4)
    assert predictors[new.version].seen == 4
    for image in Image.objects.all():
        if image.pk in {i.pk for i in reviewed}:
            assert label_names(image) == before[image.pk]  # reviewed: never changed
        else:
            expected = {"haze", "water"} | ({"striped"} if image.pk == loose[0].pk else set())
            assert label_names(image) == expected
            assert image.prediction.model == new
    # once per image and model: a second activation's run predicts nothing
    activation.do_activate(new, operator, retag=True)
    rerun = activation.run_retag(RetagJob.objects.latest("id").pk)
    assert rerun.status == "done" and predictors[new.version].seen == 4
    # rollback: the old model's stored predictions come back, computed by nobody
    rollback = activation.do_activate(old, operator, retag=True)
    rollback = activation.run_retag(rollback.pk)
    assert (rollback.done, rollback.predicted) == (4, 0)
    assert predictors[old.version].seen == 0
    for image in Image.objects.all():
        assert label_names(image) == before[image.pk], image.pk
    assert ModelVersion.objects.get(pk=new.pk).state == "retired"
    assert active_model() == old


def test_activation_needs_its_permission_and_answers_202(curator, operator, media,
                                                         monkeypatch):
    new = second_model()
    api = APIClient()
    api.force_authenticate(curator)
    assert api.post(f"/api/models/{new.pk}/activate/", {"retag": False},
                    format="json").status_code == 403
    api.force_authenticate(operator)
    response = api.post(f"/api/models/{new.pk}/activate/", {"retag": True}, format="json")
    assert response.status_code == 202
    data = api.get(f"/api/models/{new.pk}/").json()
    assert data["state"] == "active" and data["retag"]["status"] == "queued"
    assert data["retag"]["total"] == 0


def test_a_training_through_the_api_and_a_real_worker_resumes_after_a_kill(
        curator, media, start_worker, settings, tmp_path):
    """POST /api/trainings/ -> a worker on the training queue; it is killed after its
    first epoch; another worker (the heal job resends the stale job) resumes from the
    checkpoint and the job ends as a candidate."""
    curated_collection(curator, count=60, evaluation=10)
    api = APIClient()
    api.force_authenticate(curator)
    env = {"TRAINING_DIR": settings.TRAINING_DIR, "TRAINING_THREADS": "1"}
    first = start_worker(queues=settings.TRAINING_QUEUE, **env)
    response = api.post("/api/trainings/", {"epochs": 3, "labels": ["striped"]},
                        format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    deadline = time.time() + 240
    while TrainingJob.objects.get(pk=job_id).epoch < 1:
        assert time.time() < deadline, first.log_path.read_text()[-3000:]
        time.sleep(0.1)
    first.kill()
    killed_at = TrainingJob.objects.get(pk=job_id)
    assert killed_at.status == "running" and killed_at.progress > 0.03
    second = start_worker(queues=settings.TRAINING_QUEUE, **env)
    deadline = time.time() + 600
    while (job := TrainingJob.objects.get(pk=job_id)).status in ("queued", "running"):
        assert time.time() < deadline, second.log_path.read_text()[-3000:]
        time.sleep(0.5)  # the heal job (beat, in the worker) resends the stale job
    assert job.status == "done", job.error
    log = second.log_path.read_text()
    assert "[original-1] resumed after epoch" in log
    epochs = [(row["network"], row["epoch"]) for row in job.history]
    assert len(epochs) == len(set(epochs))  # no epoch twice
    data = api.get(f"/api/trainings/{job_id}/").json()
    assert data["status"] == "done" and data["model"] == job.result_id
    assert api.get(f"/api/models/{job.result_id}/").json()["state"] == "candidate"


def test_the_train_page_is_for_curators_and_says_what_is_missing(curator, user, media):
    from django.test import Client

    curated_collection(curator, count=12, evaluation=4)
    Label.objects.create(name="solar_farm")
    page = Client()
    page.force_login(curator)
    html = page.get("/trainings/").content.decode()
    assert "Train a model" in html and 'value="striped"' in html
    row = html[html.index("solar farm"):]
    assert "4 more" in row[:400]  # MIN_LABEL_POSITIVES 4, none reviewed
    assert 'id="train-form"' in html
    plain = Client()
    plain.force_login(user)
    assert plain.get("/trainings/").status_code == 403


def test_the_compare_page_names_both_models(curator, media):
    from django.test import Client

    other = second_model()
    page = Client()
    page.force_login(curator)
    html = page.get(f"/models/{other.pk}/compare/").content.decode()
    assert other.name in html and active_model().name in html
    assert "activate-form" not in html  # curators compare; activating needs its permission


def test_the_image_page_shows_what_each_model_said(curator, media):
    from django.test import Client

    image = predict_unreviewed(curator)
    other = second_model()
    Prediction.objects.create(image=image, model=other, tags=["haze"], confidence=0.4,
                              probabilities={"haze": 0.8})
    page = Client()
    page.force_login(curator)
    html = page.get(f"/images/{image.pk}/").content.decode()
    history = html[html.index('id="model-history"'):]
    assert other.name in history and "haze" in history and active_model().name in history


def test_cancel_stops_a_queued_job_at_once_and_a_running_one_at_its_next_step(
        curator, user, media, settings):
    curated_collection(curator, count=16, evaluation=4)
    queued = trainings.do_create(curator, epochs=1)
    with pytest.raises(trainings.TrainingRefused):
        trainings.do_cancel(queued, user)  # not a curator
    assert trainings.do_cancel(queued, curator).status == "cancelled"
    assert trainings.run(queued.pk).status == "cancelled"  # a late message does nothing
    settings.BATCH_STALE_SECONDS = 0.4  # the heartbeat (and its cancel check) every 0.1 s
    running = trainings.do_create(curator, epochs=50)
    TrainingJob.objects.filter(pk=running.pk).update(cancel_requested=True)  # asked meanwhile
    job = trainings.run(running.pk)
    assert job.status == "cancelled" and job.error == "cancelled by a curator"
    assert job.epoch < 100 and job.result is None

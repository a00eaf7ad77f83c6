"""Training jobs: curated labels -> a fine-tuned candidate model, inside the app.

A job fine-tunes a base model (the active one by default) on the curated ``train``
images with ``classifier.fine_tune`` (``classifier/fine_tuning.py``): the same ``train``
and ``assemble`` code as the command line, from argument lists recorded in the
candidate's card. Evaluation images
are never in its data set (they are filtered out by split before anything is written),
so the comparison on them (``webapp.services.comparison``) is honest.

Steps, each resumable: *exporting* (the data set is written once, then frozen: a resumed
job trains on the same images even if curators went on), *training* (one network after
another; a checkpoint per epoch), *assembling*, *evaluating* (the candidate's, and where
missing the base's, predictions of the evaluation images, kept apart from the labels).

It runs on the ``training`` queue under the one lease / heartbeat / heal mechanism of
``webapp.services.leases``: a thread renews the lease while an epoch runs, the heal job
resends a job whose worker went silent, and the next worker resumes from the last
epoch. A cancel request is seen between two training steps.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from classifier import model_info
from webapp.conf import app_settings
from webapp.models import Image, Label, ModelVersion, TrainingJob
from webapp.services import comparison, jobs
from webapp.services.export import write_dataset
from webapp.services.labels import label_table
from webapp.services.leases import (
    Heartbeat,
    Lease,
    LeaseLost,
    long_work_kind,
    resend_stalled,
    work_under,
)
from webapp.services.model_registry import active_model, register_model

log = logging.getLogger(__name__)

__all__ = ["TRAININGS", "TrainingRefused", "check_create", "do_cancel", "do_create",
           "do_resend_stalled", "run"]

# Share of the progress bar per step (training: the rest).
EXPORT, ASSEMBLE, EVALUATE = 0.03, 0.10, 0.04


class TrainingRefused(Exception):
    """A training the user may not start (``forbidden``) or that cannot start."""

    def __init__(self, message: str, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


class Cancelled(Exception):
    """A curator cancelled the running job."""


TRAININGS = long_work_kind("training", "trainings", TrainingJob, jobs.send_training)


def do_resend_stalled(now: datetime | None = None) -> list[int]:
    """Send every stalled training again (the heal job)."""
    return resend_stalled(TRAININGS, now)


def training_dir(job: TrainingJob) -> Path:
    root = Path(app_settings.TRAINING_DIR or Path(settings.VAR_DIR) / "trainings")
    return root / f"training-{job.pk}"


# ---------------------------------------------------------------- asking for a training

def trainable_labels(names: list[str] | None = None, reviewed_only: bool = True
                     ) -> tuple[list[str], dict[str, int]]:
    """The labels a training takes: active labels with MIN_LABEL_POSITIVES reviewed
    positives in the train set (``names``: only these, each of which must qualify);
    returns them and the positives of every candidate label."""
    table = label_table(Label.objects.filter(active=True))
    positives = {label.name: label.reviewed_train for label in table}
    minimum = app_settings.MIN_LABEL_POSITIVES
    if names:
        unknown = sorted(set(names) - set(positives))
        if unknown:
            raise TrainingRefused(f"unknown or inactive labels: {', '.join(unknown)}")
        short = [f"{n} ({positives[n]} of {minimum})" for n in names if positives[n] < minimum]
        if short:
            raise TrainingRefused("these labels have too few reviewed positives in the "
                                  f"train set: {', '.join(short)}")
        chosen = sorted(set(names))
    else:
        chosen = sorted(n for n, count in positives.items() if count >= minimum)
    if not chosen:
        raise TrainingRefused(f"no label has {minimum} reviewed positives in the train set "
                              "yet: review more images (the label list says how many are "
                              "missing)")
    return chosen, positives


def _base(base: str | int | None) -> ModelVersion:
    if base in (None, "", "active"):
        return active_model()
    model = ModelVersion.objects.filter(pk=int(base)).first() if str(base).isdigit() else None
    if model is None:
        raise TrainingRefused(f"no model with id {base!r} (use 'active' or a model id)")
    return model


def check_create(user, base: str | int | None = "active", labels: list[str] | None = None,
                 epochs: int | None = None, reviewed_only: bool = True
                 ) -> tuple[ModelVersion, list[str], int]:
    """Whether ``user`` may train with these options; returns (base, labels, epochs)."""
    if not user.has_perm("webapp.add_trainingjob"):
        raise TrainingRefused("training a model needs the add_trainingjob permission "
                              "(curators)", forbidden=True)
    model = _base(base)
    epochs = app_settings.TRAINING_EPOCHS if epochs is None else int(epochs)
    if not 1 <= epochs <= app_settings.TRAINING_MAX_EPOCHS:
        raise TrainingRefused(f"epochs must be 1 to {app_settings.TRAINING_MAX_EPOCHS}")
    chosen, _ = trainable_labels(labels, reviewed_only)
    count = _training_images(reviewed_only).count()
    if count < app_settings.TRAINING_MIN_IMAGES:
        raise TrainingRefused(f"{count} train images to learn from; a training needs "
                              f"{app_settings.TRAINING_MIN_IMAGES}")
    return model, chosen, epochs


def do_create(user, base: str | int | None = "active", labels: list[str] | None = None,
              epochs: int | None = None, reviewed_only: bool = True) -> TrainingJob:
    """A queued training job, sent to the training queue once committed."""
    model, chosen, epochs = check_create(user, base, labels, epochs, reviewed_only)
    with transaction.atomic():
        job = TrainingJob.objects.create(
            created_by=user, base=model, labels=chosen, queued_at=timezone.now(),
            options={"labels": labels or None, "epochs": epochs,
                     "reviewed_only": reviewed_only, "base": model.pk})
        jobs.training_on_commit(job.pk)
    return job


def do_cancel(job: TrainingJob, user) -> TrainingJob:
    """A queued job stops at once; a running one at its next training step."""
    if not user.has_perm("webapp.add_trainingjob"):
        raise TrainingRefused("cancelling a training needs the add_trainingjob permission",
                              forbidden=True)
    with transaction.atomic():
        TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.CANCELLED, finished_at=timezone.now())
        TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(
            cancel_requested=True)
    job.refresh_from_db()
    return job


def _training_images(reviewed_only: bool):
    """The images a training may learn from: never an evaluation image."""
    images = Image.objects.filter(split=Image.Split.TRAIN, status=Image.Status.READY)
    return images.filter(reviewed=True) if reviewed_only else images


# ---------------------------------------------------------------- the worker's side

def run(job_id: int) -> TrainingJob | None:
    """Run (or resume) a training job; idempotent: a second message finds it taken."""
    job = TrainingJob.objects.filter(pk=job_id).first()
    if job is None or job.status not in TrainingJob.UNFINISHED:
        return job
    if not work_under(Lease(TRAININGS, job_id), _train):
        log.info("training %s: not taken (another worker runs it)", job_id)
        return job
    return TrainingJob.objects.get(pk=job_id)


def _train(lease: Lease) -> None:
    """The training under its lease; how it ends is written on the job."""
    try:
        _Run(lease).run()
    except (LeaseLost, DatabaseError):
        raise  # lost: the new holder goes on; database: the task retries, the heal
        # job resends, the checkpoints stay
    except Cancelled:
        _finish(lease, TrainingJob.Status.CANCELLED, "cancelled by a curator")
    except Exception as exc:  # noqa: BLE001 - bad data or a bug: the job fails with it
        log.exception("training %s failed", lease.pk)
        _finish(lease, TrainingJob.Status.FAILED, _message(exc))


def _message(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):  # the classifier's own refusal, written for people
        return str(exc.code)
    return f"{type(exc).__name__}: {exc}"


def _finish(lease: Lease, status: str, error: str = "", **fields) -> None:
    with transaction.atomic():
        lease.hold()
        TrainingJob.objects.filter(pk=lease.pk).update(
            status=status, error=error, finished_at=timezone.now(), eta_seconds=None,
            **fields)


class _Run:
    """One worker's run of a job: the steps, the progress it writes, the stop checks."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.job = TrainingJob.objects.select_related("base").get(pk=lease.pk)
        self.work = training_dir(self.job)
        self.cancel = False
        self.heartbeat: Heartbeat | None = None
        self.histories: dict[str, list[dict]] = {}
        spec = model_info(self.job.base.path).spec
        self.network_names = [name for names in spec["members"].values() for name in names]
        self.networks = len(self.network_names)
        self.started = time.monotonic()
        self.fraction = 0.0  # of the training step
        self.fraction_at_start: float | None = None

    # stop checks: between batches and epochs of the training
    def _check(self) -> None:
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise LeaseLost(f"training {self.lease.pk} was taken over by another worker")
        if self.cancel:
            raise Cancelled

    def _on_beat(self) -> None:
        """In the heartbeat thread: read a cancel request, write the live progress."""
        job = TrainingJob.objects.filter(pk=self.lease.pk).values("cancel_requested").first()
        self.cancel = bool(job and job.get("cancel_requested"))
        self._write(progress=self._progress(), eta_seconds=self._eta())

    def _write(self, **fields) -> None:
        TrainingJob.objects.filter(pk=self.lease.pk, worker=self.lease.token).update(**fields)

    def _progress(self) -> float:
        return EXPORT + (1 - EXPORT - ASSEMBLE - EVALUATE) * self.fraction

    def _eta(self) -> float | None:
        """Seconds left from the rate measured since this worker started training."""
        if self.fraction_at_start is None or self.fraction <= self.fraction_at_start + 1e-3:
            return None
        rate = (self.fraction - self.fraction_at_start) / (time.monotonic() - self.started)
        left = (1 - self.fraction) / rate
        return round(left * (1 + (ASSEMBLE + EVALUATE) / (1 - EXPORT - ASSEMBLE - EVALUATE)))

    def _set_fraction(self, network: str, epochs_done: float) -> None:
        """Training fraction: finished networks count their whole budget (an early stop
        skips the rest), the running one its epochs and batches."""
        budget = self.job.options.get("epochs", app_settings.TRAINING_EPOCHS)
        names = self.network_names
        index = names.index(network) if network in names else 0
        self.fraction = min(1.0, (index * budget + epochs_done) / (budget * self.networks))
        if self.fraction_at_start is None:
            self.fraction_at_start = self.fraction
            self.started = time.monotonic()

    def hooks_for(self, network: str):
        from classifier import TrainingHooks  # the training loop loads in training workers only

        def on_batch(done: int, total: int) -> None:
            self._check()
            epochs = len(self.histories.get(network, []))
            self._set_fraction(network, epochs + done / max(total, 1))

        def on_epoch(name: str, history: list[dict[str, float]]) -> None:
            self.histories[name] = [dict(row) for row in history]
            self._set_fraction(name, len(history))
            rows = [{"network": n, **{k: round(v, 5) if isinstance(v, float) else v
                                      for k, v in row.items()}}
                    for n, h in self.histories.items() for row in h]
            with transaction.atomic():
                self.lease.hold()
                self._write(history=rows, epoch=len(rows), progress=self._progress(),
                            eta_seconds=self._eta())
            self._check()

        return TrainingHooks(on_batch=on_batch, on_epoch=on_epoch)

    def run(self) -> None:
        from classifier import FineTuneSettings, fine_tune

        budget = self.job.options.get("epochs", app_settings.TRAINING_EPOCHS)
        self._write(epochs=budget * self.networks, phase="exporting")
        data = self._export()
        self.fraction_at_start = None
        with Heartbeat(self.lease, self._on_beat) as heartbeat:
            self.heartbeat = heartbeat
            self._write(phase="training")
            threads = app_settings.TRAINING_THREADS
            model_dir, commands = fine_tune(
                self.job.base.path, data / "labels.csv", data / "images", self.work,
                f"{self.job.base.name}-ft{self.job.pk}", self.job.labels,
                FineTuneSettings(epochs=budget, threads=threads,
                                 device=app_settings.TRAINING_DEVICE),
                hooks_for=self.hooks_for, on_assemble=self._assembling)
            self._check()
        self.heartbeat = None
        model = register_model(str(model_dir))
        card = {"training": self.job.pk, "base": self.job.base.version,
                "labels": self.job.labels, "images": self.job.images,
                "commands": commands, "settings": {**self.job.options, "threads": threads,
                                                   "device": app_settings.TRAINING_DEVICE},
                "validation": model.metrics.get("val", {})}
        ModelVersion.objects.filter(pk=model.pk).update(card=card)
        self._write(phase="evaluating", progress=1 - EVALUATE, eta_seconds=None)
        self.lease.beat(force=True)
        comparison.predict_evaluation_images(model, beat=self.lease.beat)
        comparison.predict_evaluation_images(self.job.base, beat=self.lease.beat)
        _finish(self.lease, TrainingJob.Status.DONE, progress=1.0, phase="", result=model)

    def _assembling(self) -> None:
        self._check()
        self.fraction = 1.0
        self._write(phase="assembling", progress=1 - ASSEMBLE - EVALUATE, eta_seconds=None)

    def _export(self) -> Path:
        """The data set, written once (to a temporary folder, then renamed) and frozen."""
        data = self.work / "data"
        if (data / "labels.csv").exists():
            return data
        reviewed_only = self.job.options.get("reviewed_only", True)
        images = _training_images(reviewed_only)
        partial = self.work / "data.partial"
        shutil.rmtree(partial, ignore_errors=True)
        count = write_dataset(images, partial, reviewed_only)
        partial.rename(data)
        positives = label_table(Label.objects.filter(name__in=self.job.labels))
        counts = {"train_images": count,
                  "evaluation_images_excluded": Image.objects.filter(
                      split=Image.Split.EVALUATION).count(),
                  "positives": {label.name: label.reviewed_train for label in positives}}
        self._write(images=counts, progress=EXPORT)
        self.job.images = counts
        self.lease.beat(force=True)
        return data

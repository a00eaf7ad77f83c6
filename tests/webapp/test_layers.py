"""Dependencies run one way: tasks -> services -> jobs; libraries never import the app."""

from __future__ import annotations

import ast
from pathlib import Path

from django.db import OperationalError

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_services_never_import_tasks_and_jobs_imports_no_service():
    for path in (ROOT / "webapp" / "services").glob("*.py"):
        assert not any(n.startswith("webapp.tasks") for n in _imports(path)), path.name
    jobs = _imports(ROOT / "webapp" / "services" / "jobs.py")
    assert not any(n.startswith(("webapp.services", "webapp.tasks")) for n in jobs)


def _service_imports(name: str) -> set[str]:
    """The sibling services a service module imports (by module name)."""
    found = set()
    for imported in _imports(ROOT / "webapp" / "services" / f"{name}.py"):
        parts = imported.split(".")
        if parts[:2] == ["webapp", "services"] and len(parts) > 2:
            found.add(parts[2])
    return found


def test_a_batch_life_has_one_owner_that_calls_none_of_its_callers():
    """batches owns a batch's life and builds only on the generic lease and the job queue;
    intake, tiling, the per-chunk method and the heal job build on it, never on each other
    for batch state, and leases knows no kind of work."""
    callers = {"ingest", "tiling", "recognition", "healing"}
    assert _service_imports("batches") <= {"jobs", "leases"}
    assert _service_imports("leases") == set()
    for caller in callers:
        assert "batches" in _service_imports(caller), caller
    assert "ingest" not in _service_imports("recognition") | _service_imports("tiling")
    views = _imports(ROOT / "webapp" / "api" / "views.py")
    assert "webapp.services.batches" in views  # the rules are the service's, not the view's


# The web app's whole view of the libraries: a handful of names at each package's top
# (classifier/__init__.py, retrieval/__init__.py) and the imagery foundation.
WEB_APP_MAY_IMPORT = {
    "classifier": {"Prediction", "Predictor", "load_predictor", "model_info", "verify_model",
                   "dehaze", "FineTuneSettings", "TrainingHooks", "fine_tune",
                   "fbeta_per_sample", "per_label_scores", "paired_bootstrap"},
    "retrieval": {"Retriever", "LiveHammingIndex", "UnknownQuery", "find_model", "from_int",
                  "packed_from_int", "loading_before_fork",
                  "read_cutoffs",
                  "to_int", "set_search_threads"},
}


def test_the_web_app_sees_the_libraries_through_a_narrow_door():
    for path in (ROOT / "webapp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    assert top not in ("classifier", "retrieval", "torch", "faiss"), \
                        f"{path.name} imports {alias.name}"
            elif isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                if top in WEB_APP_MAY_IMPORT:
                    assert node.module == top, f"{path.name} reaches into {node.module}"
                    names = {alias.name for alias in node.names}
                    assert names <= WEB_APP_MAY_IMPORT[top], (path.name, names)
                assert top not in ("torch", "faiss"), f"{path.name} imports {node.module}"


def test_libraries_import_nothing_from_the_web_app():
    for package in ("classifier", "retrieval", "imagery"):
        for path in (ROOT / package).rglob("*.py"):
            assert not any(n.startswith(("webapp", "django")) for n in _imports(path)), path


def test_the_imagery_foundation_imports_no_method():
    for path in (ROOT / "imagery").rglob("*.py"):
        assert not any(n.startswith(("classifier", "retrieval", "torch")) for n in
                       _imports(path)), path


def test_tasks_share_one_retry_policy(monkeypatch):
    from webapp import tasks

    for task in (tasks.predict_batch, tasks.encode_images, tasks.heal_queue):
        assert isinstance(task, tasks.WorkerTask)
        assert OperationalError in task.autoretry_for and task.max_retries == 10
    calls = []

    def flaky(batch_id):
        calls.append(batch_id)
        if len(calls) == 1:
            raise OperationalError("database went away")

    monkeypatch.setattr(tasks.recognition, "process_batch", flaky)
    monkeypatch.setattr(tasks.WorkerTask, "retry_backoff", False)
    tasks.predict_batch.apply(args=(5,))
    assert calls == [5, 5]  # retried after the transient error


def test_messages_and_the_beat_schedule_name_real_tasks(settings):
    from webapp import tasks
    from webapp.services import jobs

    assert jobs.PREDICT_BATCH == tasks.predict_batch.name
    assert jobs.ENCODE_IMAGES == tasks.encode_images.name
    assert settings.CELERY_BEAT_SCHEDULE["heal-queue"]["task"] == tasks.heal_queue.name

"""myapi/serving.py's worker classes: what they add to gunicorn's (their problem+json refusals: test_reliability.py)."""

from __future__ import annotations

import gc

from myapi.serving import FrozenStartup, SyncProblemWorker, ThreadProblemWorker


class _LoadingWorker:
    """Stands for gunicorn's Worker: load_wsgi() loads the app."""

    def load_wsgi(self):
        self.wsgi = [{"object": n} for n in range(1000)]  # what the app holds for the worker's life


class _Worker(FrozenStartup, _LoadingWorker):
    pass


def test_a_worker_freezes_the_heap_it_loaded_the_app_with():
    """After load_wsgi, what the worker holds is out of the cyclic collector's reach (gc.freeze)."""
    gc.unfreeze()
    try:
        worker = _Worker()
        worker.load_wsgi()
        assert len(worker.wsgi) == 1000
        assert gc.get_freeze_count() >= 1000
    finally:
        gc.unfreeze()


def test_both_served_worker_classes_freeze():
    assert issubclass(SyncProblemWorker, FrozenStartup) and issubclass(ThreadProblemWorker, FrozenStartup)

"""The pause action of a fault point: it says it is reached, holds until released, and gives up at its limit."""

import threading
import time

from refresh_assets.core import faults


def test_a_paused_point_holds_the_step_until_its_release_file_appears(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.FAULT_POINT_ENV, "training_dataset:staged")
    monkeypatch.setenv(faults.FAULT_ACTION_ENV, "pause")
    monkeypatch.setenv(faults.FAULT_DIR_ENV, str(tmp_path))
    passed = threading.Event()
    step = threading.Thread(target=lambda: (faults.fault_point("training_dataset:staged"), passed.set()))
    step.start()
    deadline = time.monotonic() + 30
    while not (tmp_path / "training_dataset:staged.reached").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (tmp_path / "training_dataset:staged.reached").exists()
    time.sleep(0.3)
    assert not passed.is_set()  # still held
    (tmp_path / "training_dataset:staged.release").touch()
    step.join(timeout=30)
    assert passed.is_set()


def test_other_points_do_not_pause(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.FAULT_POINT_ENV, "training_dataset:staged")
    monkeypatch.setenv(faults.FAULT_ACTION_ENV, "pause")
    monkeypatch.setenv(faults.FAULT_DIR_ENV, str(tmp_path))
    faults.fault_point("champion_model:renamed")
    assert list(tmp_path.iterdir()) == []


def test_a_pause_never_released_ends_at_its_limit(tmp_path):
    start = time.monotonic()
    assert faults.pause("p", tmp_path, limit_seconds=0.3, poll_seconds=0.05) is False
    assert time.monotonic() - start >= 0.3
    assert (tmp_path / "p.reached").exists()

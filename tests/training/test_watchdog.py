"""--restart-if-stalled: a training command whose batches stop finishing starts itself again."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from training import watchdog

ROOT = Path(__file__).resolve().parents[2]


def test_only_checks_that_see_no_new_batch_count_toward_the_limit():
    clock = watchdog.StallClock(minutes=1.0, check_seconds=30.0)
    assert not clock.tick()                  # 30 s without a batch
    clock.batches += 1
    assert not clock.tick()                  # a batch finished: back to 0
    assert not clock.tick() and clock.tick()  # 30 s, then 60 s: the limit


def test_the_command_started_again_is_the_training_module_as_it_was_started():
    run = ["/venv/bin/python", "-m", "training.train_age_gender", "--epochs", "180", "--checkpoint", "c.npz"]
    assert watchdog.restart_command(run) == run
    assert watchdog.restart_command(["/venv/bin/python", "-m", "pytest", "tests"]) is None
    assert watchdog.restart_command(["python", "train.py"]) is None


def test_a_fit_whose_batches_stop_finishing_is_reported_once_and_a_steady_one_never(tmp_path):
    import keras
    stalls = []
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((64, 4), np.float32), np.zeros((64, 1), np.float32)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y))   # traced before it is watched

    class HangAtBatch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                time.sleep(3.0)              # the main thread stuck, as in a hung step

    watch = watchdog.StallWatchdog(minutes=0.5 / 60, check_seconds=0.1, on_stall=stalls.append)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[HangAtBatch(), watch])
    assert stalls == [0.5 / 60]
    steady = watchdog.StallWatchdog(minutes=2.0 / 60, check_seconds=0.1, on_stall=stalls.append)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y), callbacks=[steady])
    assert stalls == [0.5 / 60]


def test_a_stalled_process_not_started_as_a_training_command_exits_with_a_message():
    probe = subprocess.run([sys.executable, "-c", "from training.watchdog import start_again; start_again(20)"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert probe.returncode == watchdog.STALLED_EXIT_CODE
    assert "no training or validation batch finished in 20 min" in probe.stdout
    assert "run the same command again to resume" in probe.stdout


def test_a_stalled_training_command_replaces_itself_until_the_restarts_in_a_row_run_out(monkeypatch, capsys):
    command = [sys.executable, "-m", "training.train_emotion", "--epochs", "120"]
    started = []

    def fake_execv(path, argv):              # what os.execv would run (the process itself is not replaced here)
        started.append((path, list(argv), os.environ.get(watchdog.RESTARTS_ENV)))
    monkeypatch.setattr(sys, "orig_argv", command)
    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.delenv(watchdog.RESTARTS_ENV, raising=False)
    watchdog.start_again(20)
    assert started == [(sys.executable, command, "1")]
    assert "restart 1 of at most 3" in capsys.readouterr().out
    monkeypatch.setenv(watchdog.RESTARTS_ENV, str(watchdog.MAX_RESTARTS))
    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    watchdog.start_again(20)
    assert exits == [watchdog.STALLED_EXIT_CODE] and len(started) == 1
    assert "3 restarts in a row" in capsys.readouterr().out

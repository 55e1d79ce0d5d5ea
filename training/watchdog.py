"""A training command that stops making progress starts itself again, and so resumes from its last epoch.

TensorFlow can hang for good inside fit(): on 2026-12-06 a run in mixed bfloat16 twice sat at the start of
an epoch with every thread waiting on a futex and no CPU time spent, once in the train step and once in
the teardown of the last epoch's tf.data iterator, until it was noticed. A run of
many hours is left alone for most of them, so the training commands watch themselves: when no batch
(training or validation) has finished for `minutes`, the process prints why and replaces itself with the
same command line (os.execv), which continues after the last finished epoch from `runs/<name>/last.keras`
or the checkpoint file. After MAX_RESTARTS such restarts in a row it stops with an error instead.

Time spent paused (SIGSTOP, e.g. while a benchmark has the machine) does not count: the watch thread is
paused too, and it counts only its own check intervals.
"""
from __future__ import annotations

import os
import sys
import threading

RESTARTS_ENV = "VISAGE_STALL_RESTARTS"
MAX_RESTARTS = 3
STALLED_EXIT_CODE = 75      # EX_TEMPFAIL: the command may be run again


def restart_command(argv: list[str] | None = None) -> list[str] | None:
    """The command line to start again: `python -m training.<module> ...` as this process was started, or
    None for anything else (a test calling main(), where starting the whole test run again would be wrong)."""
    argv = list(sys.orig_argv if argv is None else argv)
    if "-m" in argv and argv.index("-m") + 1 < len(argv) and argv[argv.index("-m") + 1].startswith("training."):
        return argv
    return None


class StallClock:
    """Counts how long no batch has finished, in check intervals (so a paused process counts no time)."""
    def __init__(self, minutes: float, check_seconds: float):
        self.limit, self.check = minutes * 60.0, check_seconds
        self.batches, self.seen, self.still = 0, 0, 0.0

    def tick(self) -> bool:
        """One check interval has passed: True once no batch has finished for the limit."""
        if self.batches != self.seen:
            self.seen, self.still = self.batches, 0.0
        else:
            self.still += self.check
        return self.still >= self.limit


def start_again(minutes: float) -> None:
    """Replace this process by its own command (a fresh start resumes the run), or exit when it may not."""
    restarts = int(os.environ.get(RESTARTS_ENV, "0"))
    command = restart_command()
    print(f"watchdog: no training or validation batch finished in {minutes:g} min", flush=True)
    if command is None or restarts >= MAX_RESTARTS:
        why = "not started as python -m training.<command>" if command is None else f"{restarts} restarts in a row"
        print(f"watchdog: stopping ({why}); run the same command again to resume", flush=True)
        os._exit(STALLED_EXIT_CODE)     # not sys.exit: the main thread may be the one that hangs
        return
    os.environ[RESTARTS_ENV] = str(restarts + 1)
    print(f"watchdog: starting the same command again (restart {restarts + 1} of at most {MAX_RESTARTS})", flush=True)
    sys.stderr.flush()
    os.execv(sys.executable, command)


class StallWatchdog:
    """Keras callback: from the start of fit() to its end, a daemon thread checks every `check_seconds`
    that batches still finish, and calls `on_stall(minutes)` (start_again) when none has for `minutes`.
    A finished epoch also resets the count of restarts in a row. minutes <= 0: off."""
    def __new__(cls, minutes: float, check_seconds: float = 30.0, on_stall=start_again):
        import keras

        class _Watchdog(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.clock = StallClock(minutes, check_seconds)
                self.done = threading.Event()

            def watch(self):
                while not self.done.wait(check_seconds):
                    if self.clock.tick():
                        on_stall(minutes)
                        return

            def on_train_begin(self, logs=None):
                if minutes > 0:
                    threading.Thread(target=self.watch, name="stall-watchdog", daemon=True).start()

            def on_train_end(self, logs=None):
                self.done.set()

            def on_train_batch_end(self, batch, logs=None):
                self.clock.batches += 1

            def on_test_batch_end(self, batch, logs=None):
                self.clock.batches += 1

            def on_epoch_end(self, epoch, logs=None):
                self.clock.batches += 1
                os.environ.pop(RESTARTS_ENV, None)
        return _Watchdog()


def add_option(parser) -> None:
    parser.add_argument("--restart-if-stalled", type=float, default=20.0, metavar="MINUTES",
                        help="when no batch has finished for MINUTES, start the same command again (it resumes "
                             f"after the last finished epoch; at most {MAX_RESTARTS} times in a row); 0: off")


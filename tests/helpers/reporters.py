"""A trainer reporter for tests that read a run's checkpoints or interrupt it."""

import shutil

from trainers import ConsoleReporter


class Interrupted(Exception):
    """What a run cut short after an epoch looks like to the trainer: nothing after that report."""


class KeepLatest(ConsoleReporter):
    """Keeps a copy of the latest checkpoint folder in ``keep``; ``stop_after``: interrupts the run after that epoch."""

    def __init__(self, keep, stop_after=None):
        super().__init__()
        self.keep, self.stop_after = keep, stop_after

    def report(self, metrics, checkpoint_dir):
        super().report(metrics, None)
        shutil.rmtree(self.keep, ignore_errors=True)
        shutil.copytree(checkpoint_dir, self.keep)
        if metrics["epoch"] == self.stop_after:
            raise Interrupted

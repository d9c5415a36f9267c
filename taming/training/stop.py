"""Why a training run stopped early (no heavy imports: the CLI's error handling reads these)."""
from __future__ import annotations


class RunStopped(SystemExit):
    """Stopped on purpose by a signal after saving last.ckpt; the exit status tells a scheduler why
    (143 SIGTERM, 130 SIGINT, as a shell reports a process those signals ended)."""


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the term."""

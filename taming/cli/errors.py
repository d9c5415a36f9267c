"""The one place that turns a user's mistake into one line on stderr and exit status 2."""
from __future__ import annotations

import sys
from typing import Callable

from taming.checkpoint import CheckpointError
from taming.config import ConfigError, mask_env_values


def user_errors() -> tuple[type[BaseException], ...]:
    from taming.data.errors import DataError
    from taming.hardware import CpuClassError  # TAMING_CPU_ISA naming a class this CPU cannot run
    from taming.training.stop import NonFiniteLoss  # no heavy imports

    return ConfigError, CheckpointError, FileNotFoundError, DataError, CpuClassError, NonFiniteLoss


def run_reporting_errors(command: str, fn: Callable[[], int | None]) -> int:
    """Run fn; a user error prints `taming COMMAND: error: MESSAGE` and returns 2 (no traceback)."""
    try:
        return int(fn() or 0)
    except user_errors() as exc:
        print(f"taming {command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """A user error's message on one line (multi-line reports joined with '; '), `${oc.env:...}` values masked."""
    return mask_env_values("; ".join(line.strip() for line in str(exc).splitlines() if line.strip()))

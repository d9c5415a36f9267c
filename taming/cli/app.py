"""`taming app`: the interactive sampling page (Streamlit) for a trained transformer. Checks the
arguments (a missing run folder or config is reported here, in one line), then replaces this process
with `streamlit run taming/app/page.py --SAFE-SETTINGS -- ARGS`; the arguments, the settings and why
exec: taming/app/launch.py.
"""
from __future__ import annotations

import importlib.util
import os
import sys

from taming.app.launch import build_parser, streamlit_command
from taming.cli.errors import run_reporting_errors
from taming.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def go() -> int:
        from taming.generation.runs import resolve_run

        args = build_parser().parse_args(argv)
        if importlib.util.find_spec("streamlit") is None:
            raise ConfigError("streamlit is not installed: pip install taming[app]")
        if args.logdir or args.config:
            resolve_run(args.logdir, args.config)  # a wrong path fails here, not in the browser
        command = streamlit_command(args)
        sys.stdout.flush()
        os.execv(command[0], command)  # no return: this process becomes the server
        return 0  # only reached when execv is replaced in tests

    return run_reporting_errors("app", go)

"""`taming app`: the interactive sampling page (Streamlit) for a trained transformer.

    taming app [--logdir RUN_FOLDER_OR_CKPT] [--config YAML ...] [--port PORT]

Checks the arguments (a missing run folder or config is reported here, in one line), then runs
`streamlit run taming/app/page.py -- ARGS`; the page reads the same arguments. Without --logdir
the page offers the newest run under ./logs.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

from taming.cli.errors import run_reporting_errors
from taming.cli.train import ArgumentParser
from taming.config import ConfigError

PAGE = Path(__file__).resolve().parents[1] / "app" / "page.py"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming app", description="Sample from a trained transformer in the browser.")
    p.add_argument("--logdir", "-r", default=None,
                   help="run folder logs/<timestamp>_<name> (or a checkpoint file) of a Net2NetTransformer")
    p.add_argument("--config", "-b", nargs="+", default=[],
                   help="config YAML(s), merged left to right (default: the run folder's configs/*-project.yaml)")
    p.add_argument("--port", type=int, default=None, help="port of the page (Streamlit's default: 8501)")
    return p


def streamlit_command(args: argparse.Namespace, page_args: list[str]) -> list[str]:
    port = [] if args.port is None else ["--server.port", str(args.port)]
    return [sys.executable, "-m", "streamlit", "run", str(PAGE), *port, "--", *page_args]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def go() -> int:
        from taming.app.loading import resolve_run

        args = build_parser().parse_args(argv)
        if importlib.util.find_spec("streamlit") is None:
            raise ConfigError("streamlit is not installed: pip install taming[app]")
        if args.logdir or args.config:
            resolve_run(args.logdir, args.config)  # a wrong path fails here, not in the browser
        page_args = [*(["--logdir", args.logdir] if args.logdir else []),
                     *(["--config", *args.config] if args.config else [])]
        try:
            return subprocess.call(streamlit_command(args, page_args))
        except KeyboardInterrupt:  # Ctrl-C stops streamlit too
            return 130

    return run_reporting_errors("app", go)

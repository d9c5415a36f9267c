"""The app's own command line and the settings Streamlit is started with (no import of taming.cli).

    taming app [--logdir RUN_FOLDER_OR_CKPT] [--config YAML ...] [--port PORT] [--address ADDR] [--allow-import PKG]

`taming app` (taming/cli/app.py) checks these arguments and then becomes Streamlit (exec), so that
`kill PID` and Ctrl-C reach the server itself and nothing is left serving the port; the page
(page.py) parses the same arguments again.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taming.checkpoint import CheckpointError
from taming.config import ConfigError, add_allow_import
from taming.data.errors import DataError
from taming.flags import ArgumentParser

PAGE = Path(__file__).resolve().parent / "page.py"
LOCALHOST = "127.0.0.1"
MAX_UPLOAD_MB = 10  # Streamlit refuses larger uploads before the page sees them
# Why each is set: the app is often left running on shared machines.
SAFE_SETTINGS = {
    "server.headless": "true",  # no browser opened on the server
    "server.enableXsrfProtection": "true",  # uploads and widget posts need the page's own token
    "server.enableCORS": "true",
    "server.fileWatcherType": "none",  # no reruns when files change on disk
    "server.maxUploadSize": str(MAX_UPLOAD_MB),
    "browser.gatherUsageStats": "false",
    "client.toolbarMode": "minimal",  # no Deploy button or developer menu
    "client.showErrorDetails": "none",  # an unexpected error shows no traceback in the browser
    "global.developmentMode": "false",
}
# Errors a user can cause on the page: a path, a config, a checkpoint, data, a size the model cannot sample.
USER_ERRORS = (ConfigError, CheckpointError, DataError, FileNotFoundError, ValueError)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming app", description="Sample from a trained transformer in the browser.")
    p.add_argument("--logdir", "-r", default=None,
                   help="run folder logs/<timestamp>_<name> (or a checkpoint file) of a Net2NetTransformer; "
                        "without it the page opens run folders under the current folder only")
    p.add_argument("--config", "-b", nargs="+", default=[],
                   help="extra config YAML(s), merged after the run folder's configs/*-project.yaml")
    p.add_argument("--port", type=int, default=None, help="port of the page (Streamlit's default: 8501)")
    p.add_argument("--address", default=LOCALHOST,
                   help=f"address to listen on (default {LOCALHOST}: this machine only; 0.0.0.0: every interface)")
    add_allow_import(p)  # recorded in $TAMING_ALLOW_IMPORTS, which the server inherits
    return p


def page_arguments(args: argparse.Namespace) -> list[str]:
    """What the page needs to know: the model given on the command line, and the folder it was started in."""
    return [*(["--logdir", args.logdir] if args.logdir else []),
            *(["--config", *args.config] if args.config else [])]


def streamlit_command(args: argparse.Namespace) -> list[str]:
    flags = {**SAFE_SETTINGS, "server.address": args.address}
    if args.port is not None:
        flags["server.port"] = str(args.port)
    options = [f"--{key}={value}" for key, value in flags.items()]
    return [sys.executable, "-m", "streamlit", "run", str(PAGE), *options, "--", *page_arguments(args)]


def one_line(exc: BaseException) -> str:
    """A user error's message on one line (multi-line reports joined with '; ')."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())

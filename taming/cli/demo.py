"""`taming demo`: both stages, end to end, on the built-in procedural landscapes (no files needed);
the pipeline is taming/demo.py, its flags are generated from DemoOptions."""
from __future__ import annotations

import argparse
import sys

from taming.cli.errors import run_reporting_errors
from taming.flags import ArgumentParser, add_arguments, from_namespace


def build_parser() -> argparse.ArgumentParser:
    from taming.demo import DemoOptions

    p = ArgumentParser(prog="taming demo", description="Train both stages on procedural landscapes and sample.")
    return add_arguments(p, DemoOptions)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def go() -> int:
        from taming.demo import DemoOptions, run_demo

        run_demo(from_namespace(DemoOptions, build_parser().parse_args(argv)))
        return 0

    return run_reporting_errors("demo", go)

"""`taming weights`: the published weight files the project can use, where each is looked for, and
whether it is there; `taming weights fetch NAME...` downloads them (taming/weights).

    taming weights [--check]              one block per file: name, use, checksum, places, present or not
    taming weights fetch NAME... [--url URL] [--force] [--dir DIR]
    taming weights fetch all
"""
from __future__ import annotations

import argparse
import sys

from taming.cli.errors import run_reporting_errors
from taming.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taming weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    parser.add_argument("names", nargs="*", help="files to fetch (see `taming weights`), or all")
    parser.add_argument("--check", action="store_true", help="list: also verify each present file's checksum")
    parser.add_argument("--url", help="fetch: download from this URL instead (one NAME; the checksum still applies)")
    parser.add_argument("--force", action="store_true", help="fetch: download again even if the file is there")
    parser.add_argument("--dir", help="fetch: into this folder (default: the cache folder, $TAMING_WEIGHTS_DIR)")
    parser.add_argument("--quiet", action="store_true", help="fetch: no progress bar")
    return parser


def describe(spec, check: bool) -> list[str]:
    from taming.weights import places, verify

    lines = [f"{spec.name}: {spec.what} ({spec.used_by})",
             f"  checksum {spec.checksum}; from {' or '.join(spec.urls)}"]
    found = None
    for path, why in places(spec):
        if found is None and path.is_file():
            found = path
        lines.append(f"  {'*' if path == found else ' '} {path} ({why})")
    if found is None:
        lines.append(f"  missing: `{spec.fetch_command}`")
    elif check:
        problem = verify(spec, found)
        lines.append(f"  present, {'checksum OK' if problem is None else 'NOT the published file: ' + problem}")
    else:
        lines.append(f"  present: {found}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))

    def go() -> int:
        from taming.weights import REGISTRY, FetchError, cache_dir, fetch, lookup

        if args.action == "list":
            if args.names:
                raise ConfigError("`taming weights` lists every file; to download: taming weights fetch NAME...")
            print(f"cache folder: {cache_dir()} ($TAMING_WEIGHTS_DIR); '*' marks the file in use")
            for spec in REGISTRY.values():
                print("\n".join(describe(spec, args.check)))
            return 0
        if not args.names:
            raise ConfigError(f"name the files to fetch: {', '.join(REGISTRY)} or all")
        names = list(REGISTRY) if args.names == ["all"] else args.names
        if args.url and len(names) != 1:
            raise ConfigError("--url goes with exactly one NAME")
        try:
            specs = lookup(names)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        failed = 0
        for spec in specs:
            try:
                path = fetch(spec, args.url, args.dir, force=args.force, progress=not args.quiet)
            except FetchError as exc:
                print(f"taming weights: error: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(f"{spec.name}: {path}")
        return 1 if failed else 0

    return run_reporting_errors("weights", go)

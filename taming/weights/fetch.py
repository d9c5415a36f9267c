"""Download a registered weight file into the cache folder, resumably, and check it before use.

The bytes go to `.<name>.part` in the cache folder (kept when a transfer stops, so the next run asks
the server for the rest with an HTTP Range request), are checked for the size the server declared
(and the publisher's, where known) and the published checksum (MD5, or the SHA-256 prefix in the
file name; DeepLab has none: its keys are read with weights_only and checked), then fsynced and
renamed onto the final name. A file that fails its checksum is deleted and the next published URL
is tried. Only the standard library speaks HTTP here (urllib: redirects, proxies from the
environment, TLS with the system's certificates).
"""
from __future__ import annotations

import fcntl
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from taming.checkpoint import CheckpointError, read_state_dict, sync_folder
from taming.weights.registry import WeightFile, cache_dir

CHUNK = 1 << 20
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class FetchError(RuntimeError):
    """A download failed or gave the wrong bytes; the message says which URL, what, and what was kept."""


class _Retry(Exception):
    """This URL cannot give the file (network error, bad status, wrong bytes): try the next one."""


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(spec: WeightFile, path: Path) -> str | None:
    """Why `path` is not `spec`'s published file (size, checksum or keys), or None if it is."""
    if spec.size is not None and path.stat().st_size != spec.size:
        return f"it has {path.stat().st_size} bytes, the published file {spec.size}"
    if spec.md5:
        got = file_digest(path, "md5")
        return None if got == spec.md5 else f"its MD5 is {got}, the published one {spec.md5}"
    if spec.sha256_prefix:
        got = file_digest(path, "sha256")
        ok = got.startswith(spec.sha256_prefix)
        return None if ok else f"its SHA-256 is {got}, the published one starts {spec.sha256_prefix}"
    if spec.keys_check is not None:
        try:
            return spec.keys_check(read_state_dict(path))
        except CheckpointError as exc:
            return str(exc)
    return None


def _open(url: str, offset: int, timeout: float):
    if not url.startswith(("https://", "http://")):
        raise _Retry(f"{url}: only http(s) URLs are fetched")
    headers = {"User-Agent": "taming-weights/1", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing after `offset`: the part may be the whole file already
            return None
        raise _Retry(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retry(f"{url}: {getattr(exc, 'reason', exc)}") from None


def _transfer(url: str, part: IO[bytes], timeout: float, progress: bool, label: str) -> None:
    """Append the rest of `url` to `part` (all of it if the server ignores the range); raises _Retry."""
    offset = part.seek(0, os.SEEK_END)
    response = _open(url, offset, timeout)
    if response is None:
        return
    with response:
        total = None
        if offset and response.status == 206:
            match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise _Retry(f"{url}: the server resumed at the wrong place "
                             f"({response.headers.get('Content-Range')!r} for byte {offset})")
            total = int(match.group(3)) if match.group(3) != "*" else None
        else:  # a full answer: start the part again
            part.seek(0)
            part.truncate()
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        bar = _progress(progress, total, offset, label)
        try:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retry(f"{url}: transfer stopped after {part.tell()} bytes "
                                 f"({type(exc).__name__}: {exc})") from None
                if not block:
                    break
                part.write(block)
                bar.update(len(block))
        finally:
            bar.close()
            part.flush()
        if total is not None and part.tell() != total:
            raise _Retry(f"{url}: transfer stopped after {part.tell()} of {total} bytes")


def _progress(enabled: bool, total: int | None, initial: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                disable=not enabled, file=sys.stderr, leave=False)


def _commit(part_path: Path, handle: IO[bytes], dest: Path) -> None:
    os.fsync(handle.fileno())
    os.replace(part_path, dest)
    sync_folder(dest.parent)


def fetch(spec: WeightFile, url: str | None = None, folder: str | os.PathLike | None = None, *,
          force: bool = False, progress: bool = True, timeout: float = 60.0) -> Path:
    """`spec`'s file in `folder` (default: the cache folder), downloaded from `url` or its published
    URLs if not there yet; FetchError if no URL gives the published bytes."""
    folder = Path(folder) if folder is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / spec.files[0]
    if dest.is_file() and not force:
        problem = verify(spec, dest)
        if problem is None:
            return dest
        raise FetchError(f"{dest} is there but is not the published file: {problem}. "
                         f"Remove it, or run `{spec.fetch_command} --force`")
    part_path = folder / f".{dest.name}.part"
    reasons = []
    with open(part_path, "ab+") as part:
        try:
            fcntl.flock(part.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FetchError(f"another process is fetching {dest.name} into {folder} right now") from None
        if force:
            part.truncate(0)
        for source in ([url] if url else list(spec.urls)):
            try:
                _transfer(source, part, timeout, progress, spec.name)
            except _Retry as exc:
                reasons.append(str(exc))
                continue
            problem = verify(spec, part_path)
            if problem is None:
                _commit(part_path, part, dest)
                return dest
            reasons.append(f"{source}: wrong file, deleted: {problem}")
            part.truncate(0)
        kept = part.seek(0, os.SEEK_END)
    if kept == 0:
        part_path.unlink(missing_ok=True)
    tail = (f"; the {kept} bytes received are kept in {part_path}, run `{spec.fetch_command}` again to resume"
            if kept else "")
    raise FetchError(f"could not fetch {spec.files[0]}: " + "; ".join(reasons) + tail)

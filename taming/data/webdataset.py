"""Streaming from WebDataset tar shards (local paths or any fsspec URL, brace patterns).

A shard is a tar file whose members are grouped into samples by key: `000017.jpg`, `000017.seg.png`,
`000017.cls` form one sample {"__key__": "000017", "jpg": b..., "seg.png": b..., "cls": b...}.
Image shards (written by `write_image_shards`, or by any WebDataset tool) hold per sample:
    jpg | jpeg | png | webp    the image (required)
    seg.png                    label map, mode L (optional; decoded when n_labels is set)
    depth.png | depth.npy      depth: RGBA-packed float32 PNG as D-RIN, or a float .npy (optional)
    cls                        class index as ASCII text (optional)
`WebImages` decodes them into the same examples as the file datasets (image (H, W, 3) in [-1, 1],
segmentation one-hot, depth (H, W, 1), class_label, file_path_ = "<url>#<key>") with the same
transforms. Samples that fail to decode are skipped, counted and logged, as are unreadable shards.

Distribution (`ShardStream`): every epoch the shard list is shuffled with (seed, epoch), identically in
all processes, then split by DDP rank (torch.distributed) and by DataLoader worker, so each shard is
read once per epoch by one consumer. Give at least as many shards as ranks x workers (a warning says
so otherwise). `resampled=True` draws shards at random forever (a different stream per rank and
worker): use it with `epoch_length` (samples per epoch, over all ranks and workers) for multi-node runs
where ranks must see the same number of batches.
"""
from __future__ import annotations

import io
import itertools
import logging
import os
import random
import tarfile
from typing import Any, Iterable, Iterator, Sequence

import fsspec
import numpy as np
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info
from webdataset import TarWriter
from webdataset.shardlists import expand_urls

from .errors import DataError, UnreadableFile
from .imageio import normalize_depth, read_depth, read_labels, read_rgb, to_float_image
from .segmentation import one_hot
from .transforms import PairedTransform

logger = logging.getLogger("taming.data")

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


def expand(urls: str | Sequence[str]) -> list[str]:
    """"a-{000..009}.tar" or "x.tar::y.tar" or a list of those -> the list of shard URLs."""
    items = [urls] if isinstance(urls, str) else list(urls)
    out = [u for item in items for u in expand_urls(str(item))]
    if not out:
        raise DataError(f"no shards given (urls={urls!r})")
    return out


def consumer() -> tuple[int, int]:
    """(index, count) of this reader among all DDP ranks x DataLoader workers."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world * workers


def read_tar(url: str) -> Iterator[dict]:
    """Samples of one shard, streamed (members of one key are consecutive, as WebDataset writes them)."""
    sample: dict[str, Any] = {}
    with fsspec.open(url, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as archive:
        for member in archive:
            if not member.isfile():
                continue
            folder, name = os.path.split(member.name)
            if name.startswith(".") or "." not in name:
                continue
            stem, ext = name.split(".", 1)
            key = os.path.join(folder, stem) if folder else stem
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            if not sample:
                sample = {"__key__": key, "__url__": url}
            sample[ext.lower()] = archive.extractfile(member).read()
    if sample:
        yield sample


def local_shards_present(urls: list[str], owner: str) -> list[str]:
    """Drop local shard paths that do not exist (logged); `DataError` if none exists. Remote URLs
    are kept unchecked (a stat per shard could be slow); unreadable ones are skipped when read."""
    local = [u for u in urls if "://" not in u or u.startswith("file://")]
    missing = [u for u in local if not os.path.isfile(u.removeprefix("file://"))]
    if missing and len(missing) == len(urls):
        raise DataError(f"{owner}: none of the {len(urls)} shards exist (first: {missing[0]})")
    if missing:
        logger.warning("%s: %d of %d shards do not exist and are skipped: %s", owner, len(missing), len(urls),
                       ", ".join(missing[:20]))
    return [u for u in urls if u not in set(missing)]


class ShardStream(IterableDataset):
    """Decoded samples from tar shards; subclasses implement `decode(sample) -> dict` (may raise
    `UnreadableFile` to skip a sample).

    shuffle: size of the in-memory sample shuffle buffer (0: off); shards are shuffled per epoch
    unless shuffle_shards=False. epoch_length: total samples per epoch over all consumers (required
    with resampled=True). `set_epoch(n)` sets the epoch for the shard order (call it each epoch when
    DataLoader workers are not persistent); each new pass over the stream also moves it on."""

    def __init__(self, urls: str | Sequence[str], shuffle: int = 1000, resampled: bool = False,
                 epoch_length: int | None = None, seed: int = 0, shuffle_shards: bool = True):
        self.urls = local_shards_present(expand(urls), type(self).__name__)
        self.shuffle, self.resampled, self.seed, self.shuffle_shards = int(shuffle), resampled, int(seed), shuffle_shards
        if resampled and not epoch_length:
            raise DataError("resampled shards are infinite: set epoch_length (samples per epoch)")
        self.epoch_length = epoch_length
        self.epoch = 0
        self._passes = 0  # iterations started by this copy: reshuffles persistent workers too
        self.skipped = 0
        self.bad_shards: list[str] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def decode(self, sample: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def shards(self, epoch: int) -> Iterator[str]:
        index, count = consumer()
        if self.resampled:
            rng = random.Random(f"{self.seed}/{epoch}/{index}")
            while True:
                yield rng.choice(self.urls)
        urls = list(self.urls)
        if self.shuffle_shards:
            random.Random(f"{self.seed}/{epoch}").shuffle(urls)
        if len(urls) < count:
            logger.warning("%d shards for %d readers (ranks x workers): %d readers get no data; "
                           "write more shards or use resampled=True", len(urls), count, count - len(urls))
        yield from urls[index::count]

    def samples(self, epoch: int) -> Iterator[dict]:
        shards_read, fruitless = 0, 0  # fruitless: shards in a row that gave no sample
        for url in self.shards(epoch):
            shards_read += 1
            fruitless += 1
            if fruitless > 2 * len(self.urls) + 10:
                raise DataError(f"{type(self).__name__}: {fruitless - 1} shards in a row gave no readable sample "
                                f"(shards {', '.join(self.urls[:5])}{', ...' if len(self.urls) > 5 else ''}); "
                                f"skipped samples: {self.skipped}, unreadable shards: {len(self.bad_shards)}")
            try:
                for sample in read_tar(url):
                    try:
                        yield self.decode(sample)
                        fruitless = 0
                    except UnreadableFile as error:
                        self.skipped += 1
                        logger.warning("%s: skipped sample %s (%s); %d skipped so far in this process",
                                       type(self).__name__, error.path, error.reason, self.skipped)
            except (OSError, tarfile.TarError, EOFError) as exc:
                self.bad_shards.append(url)
                logger.warning("%s: shard %s cannot be read further (%s: %s); going on with the next",
                               type(self).__name__, url, type(exc).__name__, exc)
        if shards_read and fruitless == shards_read:
            raise DataError(f"{type(self).__name__}: none of the {shards_read} shards read by this process gave a "
                            f"readable sample (shards {', '.join(self.urls[:5])}{', ...' if len(self.urls) > 5 else ''}); "
                            f"skipped samples: {self.skipped}, unreadable shards: {len(self.bad_shards)}")

    def __iter__(self) -> Iterator[dict]:
        # The epoch seed: set_epoch reaches fresh worker copies; persistent workers never see it but
        # count their own passes. Every rank and worker iterates once per epoch, so all agree.
        epoch = self.epoch + self._passes
        self._passes += 1
        index, count = consumer()
        rng = random.Random(f"{self.seed}/{epoch}/{index}/buffer")
        limit = None if self.epoch_length is None else self.epoch_length // count + (index < self.epoch_length % count)
        yield from itertools.islice(self._buffered(self.samples(epoch), rng), limit)

    def _buffered(self, samples: Iterator[dict], rng: random.Random) -> Iterator[dict]:
        """`samples` through a shuffle buffer of `self.shuffle` samples (none for 0 or 1)."""
        if self.shuffle <= 1:
            yield from samples
            return
        buffer: list[dict] = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= self.shuffle:
                k = rng.randrange(len(buffer))
                buffer[k], buffer[-1] = buffer[-1], buffer[k]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer


class WebImages(ShardStream):
    """Image examples from shards, with the file datasets' transforms (see module docstring).

    size/crop_size/random_crop/random_flip/interpolation: as `PairedTransform`. n_labels and
    shift_segmentation: as the segmentation datasets (needed when shards hold seg.png)."""

    def __init__(self, urls: str | Sequence[str], size: int | None = 256, crop_size: int | None = None,
                 random_crop: bool = True, random_flip: bool = True, interpolation: str = "bicubic",
                 n_labels: int | None = None, shift_segmentation: bool = False, shuffle: int = 1000,
                 resampled: bool = False, epoch_length: int | None = None, seed: int = 0,
                 shuffle_shards: bool = True):
        super().__init__(urls, shuffle=shuffle, resampled=resampled, epoch_length=epoch_length, seed=seed,
                         shuffle_shards=shuffle_shards)
        self._said_no_labels = False
        self.transform = PairedTransform(size=size, crop_size=crop_size, random_crop=random_crop,
                                         random_flip=random_flip, interpolation=interpolation)
        self.n_labels, self.shift_segmentation = n_labels, shift_segmentation

    def decode(self, sample: dict) -> dict:
        where = f"{sample['__url__']}#{sample['__key__']}"
        ext = next((k for k in IMAGE_KEYS if k in sample), None)
        if ext is None:
            raise UnreadableFile(where, f"no image member ({', '.join(IMAGE_KEYS)}) in {sorted(sample)}")
        image = read_rgb(sample[ext], name=f"{where}.{ext}")
        maps = {}
        if "seg.png" in sample and self.n_labels is None and not self._said_no_labels:
            self._said_no_labels = True
            logger.info("WebImages: shards hold seg.png label maps but n_labels is not set: not decoded")
        if "seg.png" in sample and self.n_labels is not None:
            labels = read_labels(sample["seg.png"], name=f"{where}.seg.png")
            maps["segmentation"] = labels + np.uint8(1) if self.shift_segmentation else labels
        if "depth.png" in sample:
            maps["depth"] = normalize_depth(read_depth(sample["depth.png"], name=f"{where}.depth.png"))[..., None]
        elif "depth.npy" in sample:
            maps["depth"] = normalize_depth(np.load(io.BytesIO(sample["depth.npy"])).astype(np.float32))[..., None]
        for name, value in maps.items():
            if value.shape[:2] != image.shape[:2]:
                raise UnreadableFile(where, f"{name} is {value.shape[:2]} but the image is {image.shape[:2]}")
        out = self.transform(image, **maps)
        example = {"image": to_float_image(out["image"]), "file_path_": where}
        if "segmentation" in out:
            example["segmentation"] = one_hot(out["segmentation"], self.n_labels, where)
        if "depth" in out:
            example["depth"] = np.clip(out["depth"], -1, 1).astype(np.float32)
        if "cls" in sample:
            example["class_label"] = int(sample["cls"].decode().strip())
        return example


class ShardWriter:
    """Writes samples (dicts of bytes with "__key__") into tar shards named `pattern % k`
    ("out/train-%06d.tar", any fsspec URL), starting a new shard every `maxcount` samples."""

    def __init__(self, pattern: str, maxcount: int = 10000):
        if "%" not in pattern:
            raise DataError(f"shard pattern {pattern!r} needs a %d-style field for the shard number, e.g. 'train-%06d.tar'")
        self.pattern, self.maxcount = pattern, int(maxcount)
        self.paths: list[str] = []
        self._file = self._tar = None
        self._count = 0

    def _next(self) -> None:
        self.close()
        path = self.pattern % len(self.paths)
        directory = os.path.dirname(path)
        if directory and "://" not in path:
            os.makedirs(directory, exist_ok=True)
        self._file = fsspec.open(path, "wb").open()
        self._tar = TarWriter(self._file, encoder=False)
        self.paths.append(path)
        self._count = 0

    def write(self, sample: dict) -> None:
        if self._tar is None or self._count >= self.maxcount:
            self._next()
        self._tar.write(sample)
        self._count += 1

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._file.close()
            self._tar = self._file = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def encode_image(array: np.ndarray, format: str = "PNG", **options) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format, **options)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_image_shards(pattern: str, samples: Iterable[dict], maxcount: int = 1000, image_format: str = "png") -> list[str]:
    """Write image shards from dicts {"image": (H, W, 3) uint8, optional "segmentation": (H, W) uint8
    labels, "depth": (H, W) float, "class_label": int, "key": str}. Returns the shard paths."""
    with ShardWriter(pattern, maxcount) as writer:
        for index, item in enumerate(samples):
            sample = {"__key__": str(item.get("key", f"{index:09d}"))}
            if image_format == "jpg":
                sample["jpg"] = encode_image(item["image"], "JPEG", quality=95)
            else:
                sample["png"] = encode_image(item["image"])
            if item.get("segmentation") is not None:
                sample["seg.png"] = encode_image(np.asarray(item["segmentation"], dtype=np.uint8))
            if item.get("depth") is not None:
                sample["depth.npy"] = npy_bytes(np.asarray(item["depth"], dtype=np.float32))
            if item.get("class_label") is not None:
                sample["cls"] = str(int(item["class_label"])).encode()
            writer.write(sample)
    return writer.paths

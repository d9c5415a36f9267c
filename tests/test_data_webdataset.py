"""WebDataset image shards and pre-tokenized code shards: round trips, workers, DDP split, bad data."""
import io
import logging
import pickle
import tarfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import taming.data.webdataset as wdmod
from taming.data.codes import CodeDataset, CodeShards, write_code_arrays, write_code_shards
from taming.data.errors import DataError
from taming.data.landscapes import ProceduralLandscapes
from taming.data.webdataset import WebImages, expand, write_image_shards


def landscape_items(n=10, size=32):
    data = ProceduralLandscapes(size=size, length=n, seed=1)
    for i in range(n):
        rgb, labels = data.render(i)
        yield {"image": rgb, "segmentation": labels, "class_label": i % 3, "key": f"s{i:03d}"}


def test_image_shards_round_trip(tmp_path):
    paths = write_image_shards(str(tmp_path / "shard-%04d.tar"), landscape_items(), maxcount=4)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["shard-0000.tar", "shard-0001.tar", "shard-0002.tar"]
    urls = str(tmp_path / "shard-{0000..0002}.tar")
    assert expand(urls) == paths
    stream = WebImages(urls, size=32, random_crop=False, random_flip=False, n_labels=8, shuffle=0,
                       shuffle_shards=False)
    examples = list(stream)
    assert [ex["file_path_"].rsplit("#", 1)[1] for ex in examples] == [f"s{i:03d}" for i in range(10)]
    got = {ex["file_path_"].rsplit("#", 1)[1]: ex for ex in examples}
    source = ProceduralLandscapes(size=32, length=10, seed=1)
    for i in (0, 9):
        ex, ref = got[f"s{i:03d}"], source[i]
        np.testing.assert_array_equal(ex["image"], ref["image"])  # PNG is lossless, 32 px needs no resize
        np.testing.assert_array_equal(ex["segmentation"], ref["segmentation"])
        assert ex["class_label"] == i % 3


def test_image_shards_with_two_workers_see_every_sample_once(tmp_path):
    write_image_shards(str(tmp_path / "s-%02d.tar"), landscape_items(8, 24), maxcount=2)
    stream = WebImages(str(tmp_path / "s-{00..03}.tar"), size=16, n_labels=8, shuffle=3)
    loader = DataLoader(stream, batch_size=2, num_workers=2)
    keys, shapes = [], set()
    for batch in loader:
        keys += batch["file_path_"]
        shapes.add(tuple(batch["image"].shape))
        assert batch["segmentation"].shape[-1] == 8 and batch["class_label"].dtype == torch.int64
    assert sorted(k.rsplit("#", 1)[1] for k in keys) == [f"s{i:03d}" for i in range(8)]
    assert shapes == {(2, 16, 16, 3)}


def test_ddp_split_is_a_partition_and_epochs_reshuffle(tmp_path, monkeypatch):
    write_image_shards(str(tmp_path / "s-%02d.tar"), landscape_items(12, 16), maxcount=2)
    stream = WebImages(str(tmp_path / "s-{00..05}.tar"), size=16, shuffle=0)
    for epoch in (0, 3):
        seen = []
        for rank in (0, 1):  # each rank holds its own copy of the dataset
            monkeypatch.setattr(wdmod, "consumer", lambda rank=rank: (rank, 2))
            copy = pickle.loads(pickle.dumps(stream))
            copy.set_epoch(epoch)
            seen.append([ex["file_path_"] for ex in copy])
        assert len(seen[0]) == len(seen[1]) == 6 and not set(seen[0]) & set(seen[1])
    monkeypatch.setattr(wdmod, "consumer", lambda: (0, 1))
    first = [ex["file_path_"] for ex in stream]
    second = [ex["file_path_"] for ex in stream]  # a persistent worker's second pass reshuffles too
    assert sorted(first) == sorted(second) and first != second


def test_resampled_stream_needs_and_honours_epoch_length(tmp_path):
    write_image_shards(str(tmp_path / "s-%02d.tar"), landscape_items(3, 16), maxcount=2)
    with pytest.raises(DataError, match="epoch_length"):
        WebImages(str(tmp_path / "s-{00..01}.tar"), size=16, resampled=True)
    stream = WebImages(str(tmp_path / "s-{00..01}.tar"), size=16, resampled=True, epoch_length=7, shuffle=2)
    assert len(list(stream)) == 7


def test_bad_samples_and_shards_are_skipped_and_logged(tmp_path, caplog):
    write_image_shards(str(tmp_path / "good-%02d.tar"), landscape_items(2, 16), maxcount=10)
    with tarfile.open(tmp_path / "mixed-00.tar", "w") as tar:
        for name, data in (("a.png", b"not a png"), ("b.txt", b"no image here")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    good_bytes = (tmp_path / "good-00.tar").read_bytes()
    (tmp_path / "cut-00.tar").write_bytes(good_bytes[: len(good_bytes) // 2 + 100])
    urls = [str(tmp_path / "good-00.tar"), str(tmp_path / "mixed-00.tar"), str(tmp_path / "cut-00.tar")]
    stream = WebImages(urls, size=16, shuffle=0)
    with caplog.at_level(logging.WARNING, logger="taming.data"):
        out = list(stream)
    assert len(out) == 3  # 2 from the good shard + the cut shard's first sample (complete before the cut)
    assert stream.skipped == 2  # a.png (undecodable) and b (no image member)
    assert "mixed-00.tar#a" in caplog.text and "mixed-00.tar#b" in caplog.text
    assert stream.bad_shards == [str(tmp_path / "cut-00.tar")] and "cut-00.tar" in caplog.text


def test_fsspec_memory_url_round_trip():
    paths = write_image_shards("memory://taming-test/img-%02d.tar", landscape_items(3, 16), maxcount=2)
    assert paths == ["memory://taming-test/img-00.tar", "memory://taming-test/img-01.tar"]
    stream = WebImages("memory://taming-test/img-{00..01}.tar", size=16, shuffle=0)
    assert len(list(stream)) == 3


def code_items(n, big=False):
    rng = np.random.default_rng(0)
    for i in range(n):
        top = 40000 if big else 1024
        yield {"z": rng.integers(0, top, (4, 4)), "c": rng.integers(0, 30, (2, 2)), "class_label": i,
               "key": f"{i:09d}_{'flip' if i % 2 else 'orig'}", "meta": {"variant": i % 2}}


def test_code_shards_round_trip_and_workers(tmp_path):
    paths = write_code_shards(str(tmp_path / "codes-%03d.tar"), code_items(6), maxcount=4)
    assert len(paths) == 2
    with tarfile.open(paths[0]) as tar:
        names = tar.getnames()
        assert "000000000_orig.z.npy" in names and "000000001_flip.c.npy" in names
        assert np.load(io.BytesIO(tar.extractfile("000000000_orig.z.npy").read())).dtype == np.int16  # compact storage
    expected = list(code_items(6))
    stream = CodeShards(str(tmp_path / "codes-{000..001}.tar"), shuffle=0)
    got = {s["__key__"]: s for s in stream}
    for item in expected:
        sample = got[item["key"]]
        assert sample["z_indices"].dtype == np.int64
        np.testing.assert_array_equal(sample["z_indices"], item["z"])
        np.testing.assert_array_equal(sample["c_indices"], item["c"])
        assert sample["class_label"] == item["class_label"]
    loader = DataLoader(CodeShards(str(tmp_path / "codes-{000..001}.tar"), shuffle=3), batch_size=3, num_workers=2)
    batches = list(loader)
    assert sum(len(b["__key__"]) for b in batches) == 6
    assert batches[0]["z_indices"].dtype == torch.int64 and batches[0]["z_indices"].shape[1:] == (4, 4)


def test_code_shards_wide_codebooks_use_int32(tmp_path):
    paths = write_code_shards(str(tmp_path / "w-%d.tar"), code_items(2, big=True))
    with tarfile.open(paths[0]) as tar:
        assert np.load(io.BytesIO(tar.extractfile("000000000_orig.z.npy").read())).dtype == np.int32
    sample = next(iter(CodeShards(paths, shuffle=0)))
    np.testing.assert_array_equal(sample["z_indices"], next(code_items(1, big=True))["z"])
    with pytest.raises(DataError, match="integers"):
        write_code_shards(str(tmp_path / "f-%d.tar"), [{"z": np.zeros((2, 2), np.float32)}])


def test_code_arrays_map_style(tmp_path):
    z = torch.randint(0, 1024, (5, 3, 3))
    c = torch.randint(0, 20, (5, 2, 2))
    write_code_arrays(tmp_path / "codes", z, c=c, class_label=torch.arange(5))
    data = CodeDataset(tmp_path / "codes")
    assert len(data) == 5 and isinstance(data.z, np.memmap)
    np.testing.assert_array_equal(data[3]["z_indices"], z[3].numpy())
    np.testing.assert_array_equal(data[3]["c_indices"], c[3].numpy())
    assert data[4]["class_label"] == 4
    batch = next(iter(DataLoader(data, batch_size=5)))
    assert torch.equal(batch["z_indices"], z)
    with pytest.raises(DataError, match="no z.npy"):
        CodeDataset(tmp_path / "missing")


def test_nothing_readable_stops_with_a_clear_message(tmp_path):
    with pytest.raises(DataError, match="none of the 2 shards exist"):
        WebImages(str(tmp_path / "x-{0..1}.tar"), size=16)
    with tarfile.open(tmp_path / "bad-0.tar", "w") as tar:
        info = tarfile.TarInfo("a.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError, match="gave a readable sample"):
        list(WebImages(str(tmp_path / "bad-0.tar"), size=16))
    with pytest.raises(DataError, match="in a row gave no readable sample"):
        list(WebImages(str(tmp_path / "bad-0.tar"), size=16, resampled=True, epoch_length=5))


def _ddp_reader(rank, world, store_file, pattern, out_file):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world)
    try:
        loader = DataLoader(WebImages(pattern, size=16, shuffle=2), batch_size=1, num_workers=2)
        keys = [k for batch in loader for k in batch["file_path_"]]
        with open(f"{out_file}.{rank}", "w") as handle:
            handle.write("\n".join(keys))
    finally:
        dist.destroy_process_group()


def test_real_ddp_two_ranks_two_workers_partition_the_shards(tmp_path):
    import multiprocessing
    write_image_shards(str(tmp_path / "s-%02d.tar"), landscape_items(8, 16), maxcount=1)
    context = multiprocessing.get_context("fork")
    args = (str(tmp_path / "store"), str(tmp_path / "s-{00..07}.tar"), str(tmp_path / "keys"))
    procs = [context.Process(target=_ddp_reader, args=(rank, 2) + args) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    keys = [(tmp_path / f"keys.{rank}").read_text().split("\n") for rank in range(2)]
    assert len(keys[0]) == len(keys[1]) == 4 and not set(keys[0]) & set(keys[1])
    assert sorted(k.rsplit("#", 1)[1] for k in keys[0] + keys[1]) == [f"s{i:03d}" for i in range(8)]


def test_data_module_drop_last_applies_to_streams(tmp_path):
    from taming.training.datamodule import DataModuleFromConfig

    write_image_shards(str(tmp_path / "s-%02d.tar"), landscape_items(5, 16), maxcount=5)
    node = {"target": "taming.data.webdataset.WebImages",
            "params": {"urls": str(tmp_path / "s-00.tar"), "size": 16, "n_labels": 8, "shuffle": 0}}
    for drop_last, sizes in ((False, [2, 2, 1]), (True, [2, 2])):
        dm = DataModuleFromConfig(batch_size=2, train=node, validation=node, num_workers=0, drop_last=drop_last)
        assert [len(b["file_path_"]) for b in dm.train_dataloader()] == sizes
        assert [len(b["file_path_"]) for b in dm.val_dataloader()] == [2, 2, 1]

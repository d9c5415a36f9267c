"""Every user-facing command given bad input exits non-zero with one line and no traceback."""
from __future__ import annotations

import pytest

from taming.cli.main import main
from helpers import vqgan_config, write_config


@pytest.fixture
def files(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml", vqgan_config())
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"PK\x03\x04 not really a checkpoint")
    run = tmp_path / "logs" / "2026-01-01T00-00-00_x"
    (run / "checkpoints").mkdir(parents=True)
    (run / "configs").mkdir()
    return {"cfg": str(cfg), "junk": str(junk), "run": str(run), "out": str(tmp_path / "out")}


@pytest.mark.parametrize("argv,needle", [
    (["train", "-r", "{junk}", "-t"], "--resume: checkpoint {junk} is damaged"),
    (["train", "-r", "{run}", "-t"], "last.ckpt is missing and"),
    (["train", "-b", "{cfg}", "-t", "data.params.batch_size=1.5"], "data.params.batch_size: expected int"),
    (["train", "-b", "{cfg}", "-t", "model.params.ddconfig.ch_mult=[1,1"], "cannot merge"),
    (["train", "-b", "{cfg}", "-t", "lightning.trainer.max_steps=many"], "lightning.trainer.max_steps: expected int"),
    (["tokenize", "--config", "{cfg}", "--ckpt", "{junk}", "--out", "{out}"], "cannot read checkpoint {junk}"),
    (["tokenize", "--config", "{cfg}", "--out", "{out}", "--shard-size", "0"], "--shard-size must be >= 1"),
    (["demo", "--steps", "abc"], "argument --steps: expected a finite number > 0, got 'abc'"),
    # issue 20: every float flag is finite and in its range, checked as it is parsed
    (["demo", "--temperature", "nan"], "argument --temperature: must be a finite number > 0, got 'nan'"),
    (["sample", "-r", "{run}", "-n", "1", "-o", "{out}", "--temperature", "nan"],
     "argument --temperature/-t: must be a finite number > 0, got 'nan'"),
    (["sample", "-r", "{run}", "-n", "1", "-o", "{out}", "-t", "0"], "must be a finite number > 0, got '0'"),
    (["sample", "-r", "{run}", "-n", "1", "-o", "{out}", "--top-p", "inf"],
     "argument --top-p/--top_p/-p: must be a finite number > 0 and <= 1, got 'inf'"),
    (["sample", "-r", "{run}", "-n", "1", "-o", "{out}", "--cfg-scale", "nan"],
     "argument --cfg-scale: must be a finite number >= 0, got 'nan'"),
    (["sample", "-r", "{run}", "-n", "1", "-o", "{out}", "--accept-rate", "1.5"],
     "argument --accept-rate: must be a finite number > 0 and <= 1, got '1.5'"),
    (["sample-conditional", "-r", "{run}", "-o", "{out}", "--top-p", "nan"], "must be a finite number > 0 and <= 1"),
    (["sample-window", "-r", "{run}", "--condition", "{cfg}", "-o", "{out}", "--temperature=-inf"], "must be a finite number > 0"),
    (["sample-scene", "-r", "{run}", "-o", "{out}", "--temperature", "nan"], "must be a finite number > 0, got 'nan'"),
])
def test_one_line_and_non_zero_exit(files, capsys, argv, needle):
    rc = main([a.format(**files) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(err) == 1 and err[0].startswith(f"taming {argv[0]}: error: ") and needle.format(**files) in err[0], err

"""Which checkpoint a resumed run continues from.

last.ckpt first. If it is missing or corrupt (a run killed while writing it before writes were
atomic, a disk that filled up), say so and continue from the newest complete checkpoint beside it;
if there is none, stop with one line. Temp files of killed writers are swept on the way.
"""
from __future__ import annotations

import os
from pathlib import Path

from taming.checkpoint import CheckpointError, checkpoint_problem, sweep_temp_files

LAST = "last.ckpt"


def pick_resume_checkpoint(path: str | Path) -> Path:
    """`path` if it is a complete checkpoint; for last.ckpt, else the newest complete one in its folder."""
    path = Path(path)
    sweep_temp_files(path.parent)
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    if path.name != LAST:
        raise CheckpointError(f"--resume: checkpoint {path} is {problem}")
    others = sorted((p for p in path.parent.glob("*.ckpt") if p.name != LAST),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for other in others:
        if checkpoint_problem(other) is None:
            if int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0:  # say it once
                print(f"resume: {path} is {problem}; continuing from the newest complete checkpoint, {other}",
                      flush=True)
            return other
    tried = f" (and {len(others)} other checkpoint(s) there are damaged too)" if others else ""
    raise CheckpointError(f"--resume: {path} is {problem} and {path.parent} holds no other complete checkpoint{tried}")

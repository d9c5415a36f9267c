"""Batching for every dataset: torch's default collation, except that a per-example list of objects
(`Annotations`, a different length in every image) stays one list per example instead of failing
torch's equal-length check."""
from __future__ import annotations

from typing import Any, Sequence

from torch.utils.data import default_collate
from torch.utils.data._utils.collate import collate as _collate, default_collate_fn_map

from .helper_types import Annotations


def _keep_lists(batch: Sequence[Annotations], *, collate_fn_map: Any = None) -> list[Annotations]:
    return list(batch)


COLLATE_FN_MAP = {**default_collate_fn_map, Annotations: _keep_lists}


def collate(batch: Sequence[Any]) -> Any:
    """default_collate, plus `Annotations` values kept as a list (B lists of objects)."""
    return _collate(batch, collate_fn_map=COLLATE_FN_MAP)


__all__ = ["collate", "default_collate"]

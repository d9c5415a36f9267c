"""The `ddconfig` settings shared by Encoder and Decoder, as a schema the config checker reads.

`ddconfig` is a plain dict inside a VQGAN's params (not a `target:` node), and both halves take
**kwargs, so without this a typo there would be silently ignored. tests/test_config_validation.py
keeps the keys equal to the named parameters of Encoder and Decoder.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence, TypedDict


class DDConfig(TypedDict, total=False):
    ch: int
    out_ch: int
    ch_mult: Sequence[int]
    num_res_blocks: int
    attn_resolutions: Sequence[int]
    dropout: float
    resamp_with_conv: bool
    in_channels: int
    resolution: int
    z_channels: int
    double_z: bool
    give_pre_end: bool


def check_ddconfig(cfg: Mapping[str, Any], where: str) -> None:
    """Rules across keys: the image side must halve evenly at every downsampling level."""
    from taming.config import ConfigError

    for key in ("ch", "num_res_blocks", "in_channels", "resolution", "z_channels", "out_ch"):
        if key in cfg and cfg[key] < 1:
            raise ConfigError(f"{where}.{key}: must be >= 1, got {cfg[key]}")
    mult = list(cfg.get("ch_mult", (1, 2, 4, 8)))
    if not mult or min(mult) < 1:
        raise ConfigError(f"{where}.ch_mult: expected a non-empty list of positive ints, got {mult}")
    factor = 2 ** (len(mult) - 1)
    if "resolution" in cfg and cfg["resolution"] % factor:
        raise ConfigError(f"{where}.resolution: {cfg['resolution']} is not divisible by {factor} "
                          f"(2 ** (len(ch_mult) - 1) for ch_mult={mult})")


DDConfig.__check__ = check_ddconfig  # type: ignore[attr-defined]  # read by taming.config_types

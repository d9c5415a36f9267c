"""The `ddconfig` settings shared by Encoder and Decoder, as a schema the config checker reads.

`ddconfig` is a plain dict inside a VQGAN's params (not a `target:` node), and both halves take
**kwargs, so without this a typo there would be silently ignored. tests/test_config_validation.py
keeps the keys equal to the named parameters of Encoder and Decoder.
"""
from __future__ import annotations

from typing import Annotated, Any, Mapping, Sequence, TypedDict

from taming.config_types import MAX_WIDTH, Between, Width

GROUPS = 32  # GroupNorm's groups (taming.tokenizer.layers.Normalize): every normalised width divides by it


class DDConfig(TypedDict, total=False):
    ch: Width
    out_ch: Width
    ch_mult: Sequence[Annotated[int, Between(1, 64)]]
    num_res_blocks: Annotated[int, Between(1, 64)]
    attn_resolutions: Sequence[int]
    dropout: Annotated[float, Between(0.0, 1.0)]
    resamp_with_conv: bool
    in_channels: Width
    resolution: Annotated[int, Between(1, 2**16)]
    z_channels: Width
    double_z: bool
    give_pre_end: bool


def check_ddconfig(cfg: Mapping[str, Any], where: str) -> None:
    """Rules across keys (each key's own type and range are checked first): widths GroupNorm can split,
    no layer wider than MAX_WIDTH, and an image side that halves evenly at every downsampling level."""
    from taming.config import ConfigError

    mult = list(cfg.get("ch_mult", (1, 2, 4, 8)))
    if not mult:
        raise ConfigError(f"{where}.ch_mult: expected a non-empty list of positive ints, got {mult}")
    ch = cfg.get("ch")
    if ch is not None:
        if ch % GROUPS:
            raise ConfigError(f"{where}.ch: {ch} is not a multiple of {GROUPS} (the GroupNorm layers split "
                              f"every width into {GROUPS} groups)")
        if ch * max(mult) > MAX_WIDTH:
            raise ConfigError(f"{where}.ch_mult: ch {ch} x {max(mult)} = {ch * max(mult)} channels is more than "
                              f"{MAX_WIDTH}")
    factor = 2 ** (len(mult) - 1)
    if "resolution" in cfg and cfg["resolution"] % factor:
        raise ConfigError(f"{where}.resolution: {cfg['resolution']} is not divisible by {factor} "
                          f"(2 ** (len(ch_mult) - 1) for ch_mult={mult})")


DDConfig.__check__ = check_ddconfig  # type: ignore[attr-defined]  # read by taming.config_types

"""First-stage reconstruction quality over a data split: PSNR, SSIM, LPIPS, rFID, codebook use.

PSNR and SSIM are per image on [-1, 1] (range 2, the same numbers as on [0, 1] with range 1), averaged
over images; reconstructions are clamped to [-1, 1] first, as saved images would be. LPIPS is the VGG
LPIPS of taming/losses/lpips.py: with the weights the run's checkpoint holds when it trained with
LPIPS (`loss.perceptual_loss.*`), else the local weight files; neither -> the column is left out with the
reason. rFID is the FID between the inputs and their reconstructions as 8-bit images (Inception
weights needed, else left out with the reason). Codebook usage: distinct codes over the split, their
share of the codebook, and the perplexity exp(entropy) of the code histogram. With several processes
(taming/distributed.py) the batches go round-robin to them; each batch's sums, code counts and features
are gathered on rank 0 and added in batch order, as one process adds them.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import torch

from taming.checkpoint import load_weights, read_state_dict
from taming.data.errors import DataError
from taming.distributed import World, lazy_batches
from taming.eval import fidelity
from taming.eval.image_metrics import psnr, ssim
from taming.eval.runs import batch_images
from taming.tokenizer.codebook import perplexity


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (B, C, H, W) -> uint8, rounded as an image file would store it."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def checkpoint_lpips(ckpt: str | None, config: Any) -> torch.nn.Module | None:
    """The LPIPS weights a first stage's checkpoint carries (`loss.perceptual_loss.*`), if real: only a
    loss that trained with LPIPS (perceptual_weight > 0) read the weight files; with weight 0 those keys
    hold the untrained initial values (kept for the original key layout)."""
    params = config.model.get("params") or {}
    prefix, node = "loss.perceptual_loss.", params.get("lossconfig")
    if node is None and params.get("first_stage_config") is not None:  # a transformer run's first stage
        prefix, node = "first_stage_model." + prefix, (params.first_stage_config.get("params") or {}).get("lossconfig")
    target = str((node or {}).get("target", ""))
    weight = float(((node or {}).get("params") or {}).get("perceptual_weight", 1.0))
    if not ckpt or not target.endswith("LPIPSWithDiscriminator") or weight <= 0:
        return None
    part = {k[len(prefix):]: v for k, v in read_state_dict(ckpt).items() if k.startswith(prefix)}
    if not part:
        return None
    from taming.losses.lpips import LPIPS

    lpips = LPIPS()
    load_weights(lpips, part, source=f"{ckpt} ({prefix}*)")
    return lpips.eval()


def local_lpips() -> tuple[torch.nn.Module | None, str | None]:
    """(LPIPS with the local weight files, None) or (None, why not)."""
    from taming.losses.lpips import LPIPS
    from taming.losses.lpips_files import WeightsNotFound

    try:
        return LPIPS().load_pretrained().eval(), None
    except WeightsNotFound as exc:
        return None, " ".join(str(exc).split())


def _add_counts(counts: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Code histogram plus the indices' (a remapped codebook may use an extra 'unknown' index)."""
    new = torch.bincount(indices.reshape(-1).cpu().long(), minlength=len(counts))
    if len(new) > len(counts):
        counts = torch.cat([counts, counts.new_zeros(len(new) - len(counts))])
    return counts + new


@torch.no_grad()
def _batch_part(model: torch.nn.Module, x: torch.Tensor, lpips: torch.nn.Module | None,
                inception: torch.nn.Module | None) -> dict[str, Any]:
    """One batch's sums, code indices and Inception features."""
    quant, _, info = model.encode(x)
    xrec = model.decode(quant).float().clamp(-1, 1)
    part: dict[str, Any] = {"images": x.shape[0], "psnr": float(psnr(x, xrec).sum()),
                            "ssim": float(ssim(x, xrec).sum()), "codes": info[2].reshape(-1).cpu()}
    if lpips is not None:
        part["lpips"] = float(lpips(x, xrec).sum())
    if inception is not None:
        part["in"], part["out"] = inception(to_uint8(x))["pool"].cpu(), inception(to_uint8(xrec))["pool"].cpu()
    return part


@torch.no_grad()
def evaluate_reconstruction(model: torch.nn.Module, batches: Iterable[Mapping[str, Any]], image_key: str,
                            lpips: torch.nn.Module | None = None, inception: torch.nn.Module | None = None,
                            skipped: Mapping[str, str] | None = None, world: World | None = None,
                            done: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Metrics of `model` (a VQGAN: encode -> decode) over batches; `skipped` names the columns left out and why.
    With several processes (`world`): the result on rank 0, {} on the others. `done` is called with each
    batch's image count (a `taming.distributed.Tally` with several processes)."""
    world = world or World()
    q = model.quantize
    n_codes = int(getattr(q, "n_e", None) or getattr(q, "n_embed"))
    device = next(model.parameters()).device
    mine = []
    for index, load in world.share(lazy_batches(batches), done):
        mine.append((index, _batch_part(model, batch_images(load(), image_key).to(device), lpips, inception)))
        if done is not None:
            done(mine[-1][1]["images"])
    every = world.gather(mine)
    if every is None:
        return {}
    parts = [part for _, part in sorted((p for ps in every for p in ps), key=lambda p: p[0])]
    images = sum(p["images"] for p in parts)
    if not images:
        raise DataError("no images to evaluate")
    counts = torch.zeros(n_codes, dtype=torch.long)
    sums = {"psnr": 0.0, "ssim": 0.0, "lpips": 0.0}
    for p in parts:  # in batch order: the float sums of one process
        counts = _add_counts(counts, p["codes"])
        for k in sums:
            sums[k] += p.get(k, 0.0)
    result: dict[str, Any] = {"images": images, "psnr": sums["psnr"] / images, "ssim": sums["ssim"] / images}
    if lpips is not None:
        result["lpips"] = sums["lpips"] / images
    if inception is not None:
        if images < 2:
            raise DataError("rFID needs at least 2 images (raise --limit or use --no-rfid)")
        result["rfid"] = fidelity.frechet_distance_of_features(torch.cat([p["in"] for p in parts]),
                                                               torch.cat([p["out"] for p in parts]))
    used = int((counts > 0).sum())
    result.update(codes_used=used, codebook_size=n_codes, codebook_usage=used / n_codes,
                  perplexity=perplexity(counts.float()))
    if skipped:
        result["skipped"] = dict(skipped)
    return result

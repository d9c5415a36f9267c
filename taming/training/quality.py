"""First-stage reconstruction quality during training: PSNR and codes in use, logged by a callback
(`taming eval reconstruction` measures a finished run).

PSNR is computed per image on [0, 1] pixels (inputs and clamped reconstructions mapped from
[-1, 1]) and averaged over images; "codes in use" is the number of distinct code indices over all
images seen, the codebook-collapse symptom (the two measures of the original's S-FLCKR recipe:
BENCHMARKS.md "S-FLCKR quality").
"""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info


def psnr01(x: torch.Tensor, xrec: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) in dB of images in [-1, 1], compared on [0, 1]."""
    a = (x.float().clamp(-1, 1) + 1) / 2
    b = (xrec.float().clamp(-1, 1) + 1) / 2
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


@torch.no_grad()
def reconstruct(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction (B, C, H, W), code indices (B, N)) through encode -> decode."""
    quant, _, info = model.encode(x)
    return model.decode(quant), info[2].reshape(x.shape[0], -1)


class QualityMeter:
    """Accumulates PSNR and the set of codes over batches."""

    def __init__(self) -> None:
        self.psnr_sum, self.images = 0.0, 0
        self.codes: set[int] = set()

    def update(self, x: torch.Tensor, xrec: torch.Tensor, indices: torch.Tensor) -> None:
        p = psnr01(x, xrec)
        self.psnr_sum += float(p.sum())
        self.images += int(p.numel())
        self.codes.update(torch.unique(indices).tolist())

    def result(self) -> dict[str, float]:
        return {"psnr": self.psnr_sum / max(self.images, 1), "codes_in_use": float(len(self.codes)),
                "images": float(self.images)}


class ReconstructionQuality(Callback):
    """Logs val/psnr and val/codes_in_use after every validation run (to the CSV/TensorBoard loggers)."""

    def __init__(self, image_key: str | None = None) -> None:
        super().__init__()
        self.image_key = image_key
        self.meter = QualityMeter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.meter = QualityMeter()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x = pl_module.get_input(batch, self.image_key or pl_module.image_key)
        xrec, idx = reconstruct(pl_module, x)
        self.meter.update(x, xrec, idx)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        result = self.meter.result()
        # Lightning reduces logged values across processes only with sync_dist; codes are per process.
        pl_module.log("val/psnr", result["psnr"], sync_dist=True)
        pl_module.log("val/codes_in_use", result["codes_in_use"])
        # the loggers' step lags by one during in-epoch validation; record the batch count itself
        pl_module.log("val/global_step", float(trainer.global_step))
        rank_zero_info(f"step {trainer.global_step}: val PSNR {result['psnr']:.2f} dB, "
                       f"{int(result['codes_in_use'])} codes in use over {int(result['images'])} images")

"""Lightning 2 shells of the first-stage models: VQModel, GumbelVQ, EMAVQ, VQSegmentationModel,
VQNoDiscModel, with the original constructors (importable as `taming.models.vqgan.*`).

The model itself is the plain core (`taming.tokenizer.vqgan.VQGAN` and variants); a shell adds the
loss module (`self.loss`, whose weights are the original `loss.*` keys), optimizers and logging.

Training the GAN (VQModel, GumbelVQ, EMAVQ) uses manual optimization. Per batch:
1. one forward of the autoencoder;
2. generator step: VQLPIPSWithDiscriminator(optimizer_idx=0), discriminator frozen (toggled);
3. discriminator step: optimizer_idx=1 on the same, detached, reconstructions.
The original ran the whole autoencoder a second time for step 3 (Lightning 1 called training_step
once per optimizer); reusing the reconstruction saves a forward and gives the discriminator the
images the generator was just judged on.

`global_step` keeps the original meaning: Lightning 1 advanced it once per batch (once per
accumulated optimizer step). Lightning 2 counts every `optimizer.step()` in manual optimization,
which would double it with two optimizers; so only the generator step goes through the counting
LightningOptimizer wrapper and the discriminator step goes straight to the strategy (same precision
and callback handling, no count). disc_start, max_steps, logging and checkpoint frequencies thus
count batches, and resume restores the count from Lightning's own loop state.

Gradient accumulation: Lightning's `accumulate_grad_batches` is not available with manual
optimization, so the shells take `accumulate_grad_batches=N` themselves: losses are divided by N
and both optimizers step every N batches (and at the end of an epoch).

`self.learning_rate` is set by the trainer entry point (accumulate x devices x batch x base_lr, as
the original main.py did) before `configure_optimizers` runs.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import lightning as L
import torch
import torch.nn.functional as F

from taming.checkpoint import init_from_ckpt
from taming.config import ConfigError, instantiate_from_config
from taming.images import channels_first
from taming.config_types import Width
from taming.hardware import detect
from taming.optim import fused
from taming.tokenizer.codebook import CodebookSize
from taming.tokenizer.ddconfig import DDConfig
from taming.tokenizer.vqgan import VQGAN, EMAVQGAN, GumbelVQGAN
from taming.training.sharding import data_parallel_mesh, shard


def channels_last_training(device: torch.device | str = "cpu") -> bool:
    """Whether the GAN trains faster with channels_last weights and activations on `device`: only on
    CPUs whose PyTorch and oneDNN run AVX-512 kernels, which have fast channels_last weight gradients;
    with AVX2 only, oneDNN's channels_last weight gradient is several times slower than NCHW's
    (BENCHMARKS.md "Training steps side by side"). GPUs keep NCHW."""
    device = torch.device(device)
    if device.type != "cpu":
        return False
    return (detect("cpu").isa in ("avx512", "avx512_bf16", "amx_bf16")
            and torch.backends.cpu.get_cpu_capability().startswith("AVX512"))


class VQModel(VQGAN, L.LightningModule):
    # NCHW, or channels_last where channels_last_training says it is faster (set by configure_model)
    train_memory_format = torch.contiguous_format

    def __init__(self, ddconfig: DDConfig, lossconfig: Mapping[str, Any], n_embed: CodebookSize, embed_dim: Width,
                 ckpt_path: str | None = None, ignore_keys: Sequence[str] = (), image_key: str = "image",
                 colorize_nlabels: int | None = None, monitor: str | None = None, remap: str | None = None,
                 sane_index_shape: bool = False, accumulate_grad_batches: int = 1, **quantizer_options: Any):
        # The core builds encoder, decoder, quantize, quant_conv, post_quant_conv (variants pick the
        # quantizer through the MRO, e.g. GumbelVQ -> GumbelVQGAN.make_quantizer).
        super().__init__(ddconfig, n_embed, embed_dim, remap=remap, sane_index_shape=sane_index_shape,
                         **quantizer_options)
        self.image_key = image_key
        self.loss = instantiate_from_config(lossconfig, where="model.params.lossconfig")
        if colorize_nlabels is not None:
            if not isinstance(colorize_nlabels, int):
                raise ConfigError(f"model.params.colorize_nlabels must be an int, got {colorize_nlabels!r}")
            # random projection of label maps to RGB for image logs (an original state_dict key)
            self.register_buffer("colorize", torch.randn(3, colorize_nlabels, 1, 1))
        if monitor is not None:
            self.monitor = monitor
        if int(accumulate_grad_batches) < 1:
            raise ConfigError(f"model.params.accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.learning_rate: float | None = None
        self.automatic_optimization = False
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys=ignore_keys)

    # -- the original helpers ---------------------------------------------------------------------
    def init_from_ckpt(self, path: str, ignore_keys: Sequence[str] = ()) -> None:
        init_from_ckpt(self, path, ignore_keys=ignore_keys)

    def get_input(self, batch: Mapping[str, Any], k: str) -> torch.Tensor:
        """batch[k] (B, H, W, C) or (B, H, W) -> float (B, C, H, W)."""
        if k not in batch:
            raise KeyError(f"{type(self).__name__}: the batch has no {k!r} (image_key); it holds {sorted(batch)}")
        return channels_first(batch[k])

    @torch.no_grad()
    def log_images(self, batch: Mapping[str, Any], **kwargs: Any) -> dict[str, torch.Tensor]:
        x = self.get_input(batch, self.image_key).to(self.device)
        xrec, _ = self(x)
        if x.shape[1] > 3:
            x, xrec = self.to_rgb(x), self.to_rgb(self.logged_labels(xrec))
        return {"inputs": x, "reconstructions": xrec}

    def logged_labels(self, xrec: torch.Tensor) -> torch.Tensor:
        """A reconstruction of label maps as log_images colours it."""
        return xrec

    # -- training ---------------------------------------------------------------------------------
    def configure_model(self) -> None:
        mesh = data_parallel_mesh(self)
        if mesh is not None:  # --strategy fsdp (taming/training/sharding.py)
            disc = getattr(self.loss, "discriminator", None)
            units = [self.encoder, self.decoder] + ([disc] if disc is not None else [])
            shard(self, units, mesh, keep_gathered=[self.decoder])  # get_last_layer() must be in the graph
        elif self.trainer.world_size == 1 and channels_last_training(self.trainer.strategy.root_device):
            # One process (DDP and FSDP keep NCHW: the same numbers in both, as the tests compare).
            # Here, before the optimizers exist, so that their states take the same layout.
            self.to(memory_format=torch.channels_last)
            self.train_memory_format = torch.channels_last

    def on_fit_start(self) -> None:
        # Fail before the first batch if LPIPS weight files are needed and missing.
        ensure = getattr(getattr(self, "loss", None), "ensure_weights", None)
        if ensure is not None:
            ensure()

    autoencoder_parts = ("encoder", "decoder", "quantize", "quant_conv", "post_quant_conv")

    def autoencoder_parameters(self) -> list[torch.nn.Parameter]:
        """What the generator optimizer trains."""
        return [p for part in self.autoencoder_parts for p in getattr(self, part).parameters()]

    def _lr(self) -> float:
        if self.learning_rate is None:
            raise ConfigError(f"{type(self).__name__}.learning_rate is not set; set it before training "
                              "(`taming train` sets accumulate x devices x batch_size x base_learning_rate)")
        return self.learning_rate

    def configure_optimizers(self):
        lr = self._lr()
        opt_ae = fused(torch.optim.Adam, self.autoencoder_parameters(), lr=lr, betas=(0.5, 0.9))
        opt_disc = fused(torch.optim.Adam, self.loss.discriminator.parameters(), lr=lr, betas=(0.5, 0.9))
        return [opt_ae, opt_disc], []

    def _should_step(self, batch_idx: int) -> bool:
        return (batch_idx + 1) % self.accumulate_grad_batches == 0 or bool(self.trainer.is_last_batch)

    def _log_codebook(self) -> None:
        stats = getattr(self.quantize, "codebook_stats", None)
        if stats is not None:
            for k, v in stats().items():
                self.log(f"train/codebook/{k}", float(v), on_step=True, on_epoch=False, logger=True)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int):
        x = self.get_input(batch, self.image_key).contiguous(memory_format=self.train_memory_format)
        step = self.global_step  # batches (accumulated optimizer steps) so far, as the original
        opt_ae, opt_disc = self.optimizers()
        do_step = self._should_step(batch_idx)
        accum = self.accumulate_grad_batches

        xrec, qloss = self(x)
        with self.toggled_optimizer(opt_ae):  # no gradients into the discriminator
            aeloss, log_ae = self.loss(qloss, x, xrec, 0, step, last_layer=self.get_last_layer(), split="train")
            self.manual_backward(aeloss / accum)
        if do_step:
            opt_ae.step()  # counted: advances global_step by one
            opt_ae.zero_grad(set_to_none=True)

        discloss, log_disc = self.loss(qloss, x, xrec.detach(), 1, step, last_layer=self.get_last_layer(),
                                       split="train")
        self.manual_backward(discloss / accum)
        if do_step:
            # Not counted (see module docstring): the strategy runs precision handling and hooks.
            self.trainer.strategy.optimizer_step(opt_disc.optimizer, closure=lambda: None, model=self)
            opt_disc.zero_grad(set_to_none=True)

        # sync_dist: under DDP the epoch values describe every process's batches, not rank 0's alone
        self.log("train/aeloss", aeloss.detach(), prog_bar=True, logger=True, on_step=True, on_epoch=True,
                 sync_dist=True)
        self.log_dict(log_ae, prog_bar=False, logger=True, on_step=True, on_epoch=True, sync_dist=True)
        self.log("train/discloss", discloss.detach(), prog_bar=True, logger=True, on_step=True, on_epoch=True,
                 sync_dist=True)
        self.log_dict(log_disc, prog_bar=False, logger=True, on_step=True, on_epoch=True, sync_dist=True)
        self._log_codebook()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int):
        x = self.get_input(batch, self.image_key)
        xrec, qloss = self(x)
        aeloss, log_ae = self.loss(qloss, x, xrec, 0, self.global_step, last_layer=self.get_last_layer(),
                                   split="val")
        discloss, log_disc = self.loss(qloss, x, xrec, 1, self.global_step, last_layer=self.get_last_layer(),
                                       split="val")
        # Epoch means (the original also logged per step); "val/rec_loss" is the checkpoint monitor.
        self.log("val/rec_loss", log_ae["val/rec_loss"], prog_bar=True, logger=True, on_epoch=True, sync_dist=True)
        self.log("val/aeloss", aeloss, prog_bar=True, logger=True, on_epoch=True, sync_dist=True)
        self.log_dict({k: v for k, v in log_ae.items() if k != "val/rec_loss"}, on_epoch=True, sync_dist=True)
        self.log_dict(log_disc, on_epoch=True, sync_dist=True)
        return log_ae


class GumbelVQ(VQModel, GumbelVQGAN):
    """Codes from a Gumbel-softmax; its temperature follows `temperature_scheduler_config` (a callable
    step -> temperature, e.g. taming.lr_scheduler.LambdaWarmUpCosineScheduler) at every training step."""

    def __init__(self, ddconfig: DDConfig, lossconfig: Mapping[str, Any], n_embed: CodebookSize, embed_dim: Width,
                 temperature_scheduler_config: Mapping[str, Any], ckpt_path: str | None = None,
                 ignore_keys: Sequence[str] = (), image_key: str = "image", colorize_nlabels: int | None = None,
                 monitor: str | None = None, kl_weight: float = 1e-8, remap: str | None = None,
                 accumulate_grad_batches: int = 1, **quantizer_options: Any):
        super().__init__(ddconfig, lossconfig, n_embed, embed_dim, ckpt_path=None, image_key=image_key,
                         colorize_nlabels=colorize_nlabels, monitor=monitor, remap=remap,
                         accumulate_grad_batches=accumulate_grad_batches, kl_weight=kl_weight, **quantizer_options)
        self.loss.n_classes = n_embed
        self.vocab_size = n_embed
        self.temperature_scheduler = instantiate_from_config(
            temperature_scheduler_config, where="model.params.temperature_scheduler_config")
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys=ignore_keys)

    def temperature_scheduling(self) -> None:
        self.quantize.temperature = float(self.temperature_scheduler(self.global_step))

    def encode_to_prequant(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int):
        self.temperature_scheduling()
        super().training_step(batch, batch_idx)
        self.log("temperature", self.quantize.temperature, prog_bar=False, logger=True, on_step=True, on_epoch=True,
                 sync_dist=True)


class EMAVQ(VQModel, EMAVQGAN):
    """Codebook updated by exponential moving averages, so it is left out of the generator optimizer."""

    autoencoder_parts = ("encoder", "decoder", "quant_conv", "post_quant_conv")


class _OneOptimizerVQ(VQModel):
    """Shells with one Adam over the autoencoder and automatic optimization; `ae_loss` says how
    their loss is called."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = True

    def ae_loss(self, qloss: torch.Tensor, x: torch.Tensor, xrec: torch.Tensor, split: str):
        raise NotImplementedError

    def configure_optimizers(self):
        return fused(torch.optim.Adam, self.autoencoder_parameters(), lr=self._lr(), betas=(0.5, 0.9))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int):
        x = self.get_input(batch, self.image_key).contiguous(memory_format=self.train_memory_format)
        xrec, qloss = self(x)
        aeloss, log_ae = self.ae_loss(qloss, x, xrec, split="train")
        self.log("train/aeloss", aeloss.detach(), prog_bar=True, logger=True, on_step=True, on_epoch=True,
                 sync_dist=True)
        self.log_dict(log_ae, prog_bar=False, logger=True, on_step=True, on_epoch=True, sync_dist=True)
        self._log_codebook()
        return aeloss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int):
        x = self.get_input(batch, self.image_key)
        xrec, qloss = self(x)
        aeloss, log_ae = self.ae_loss(qloss, x, xrec, split="val")
        self.log("val/aeloss", aeloss, prog_bar=True, logger=True, on_epoch=True, sync_dist=True)
        self.log_dict(log_ae, prog_bar=False, logger=True, on_epoch=True, sync_dist=True)
        return aeloss


class VQSegmentationModel(_OneOptimizerVQ):
    """Autoencodes one-hot label maps; one optimizer, BCE loss (BCELossWithQuant)."""

    def __init__(self, n_labels: int, *args: Any, ckpt_path: str | None = None, ignore_keys: Sequence[str] = (),
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.register_buffer("colorize", torch.randn(3, n_labels, 1, 1))
        # Loaded after `colorize` exists, so the checkpoint's colour projection is kept (the original
        # loaded first, non-strictly, and silently replaced it with a new random one).
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys=ignore_keys)

    def ae_loss(self, qloss, x, xrec, split):
        return self.loss(qloss, x, xrec, split=split)

    def logged_labels(self, xrec: torch.Tensor) -> torch.Tensor:
        # logits -> most likely label, one-hot, then the same colour projection as the input
        return F.one_hot(xrec.argmax(1), num_classes=self.colorize.shape[1]).permute(0, 3, 1, 2).float()


class VQNoDiscModel(_OneOptimizerVQ):
    """VQGAN trained without the adversarial step: one optimizer over the autoencoder.

    The loss is called as the generator branch (optimizer_idx 0). With VQLPIPSWithDiscriminator its
    discriminator is never trained, so give it `disc_factor: 0` (or a disc_start beyond training)
    to keep only L1 + LPIPS + codebook terms.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        disc = getattr(self.loss, "discriminator", None)
        if disc is not None:
            disc.requires_grad_(False)  # never trained here: no gradients to pile up

    def ae_loss(self, qloss, x, xrec, split):
        return self.loss(qloss, x, xrec, 0, self.global_step, last_layer=self.get_last_layer(), split=split)

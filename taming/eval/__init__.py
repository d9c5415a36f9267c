"""Evaluation: image metrics (PSNR/SSIM), the FID Inception network, FID/KID/IS/PRC, `taming eval`."""

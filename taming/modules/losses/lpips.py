"""Original import path `taming.modules.losses.lpips`."""
from taming.losses.lpips import LPIPS, NetLinLayer, ScalingLayer, normalize_tensor
from taming.losses.lpips_files import WeightsNotFound

__all__ = ["LPIPS", "NetLinLayer", "ScalingLayer", "normalize_tensor", "WeightsNotFound"]

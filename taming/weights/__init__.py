"""Published weight files: the registry (what, where looked for, checksums) and the fetcher.

    from taming.weights import MIDAS, find, fetch
    path = find(MIDAS, args.weights)        # WeightsNotFound naming `taming weights fetch midas` if missing
"""
from taming.weights.fetch import FetchError, fetch, verify
from taming.weights.files import DEEPLAB, INCEPTION, LPIPS, MIDAS, REGISTRY, VGG16
from taming.weights.registry import WeightFile, WeightsNotFound, cache_dir, find, lookup, places

__all__ = ["FetchError", "fetch", "verify", "DEEPLAB", "INCEPTION", "LPIPS", "MIDAS", "REGISTRY", "VGG16",
           "WeightFile", "WeightsNotFound", "cache_dir", "find", "lookup", "places"]

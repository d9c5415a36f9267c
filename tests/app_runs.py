"""Run folders for the app's tests (tiny transformer runs in the layout `taming train` makes): the
helpers of tests/helpers.py under the name the browser test imports."""
from helpers import make_run, prefix_config

__all__ = ["make_run", "prefix_config"]

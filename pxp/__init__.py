"""pxp: do pixel-aligned action heads generalize better than coordinate regression?"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pxp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

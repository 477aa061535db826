"""One look for every plot we write, whatever other libraries did to matplotlib's global settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def plain_style() -> Iterator[None]:
    """Matplotlib's default style (Agg backend) for the plots drawn inside the block.

    nnU-Net imports seaborn and scales every font 2.5× globally when its trainer module loads, which cuts
    off the axis labels of small figures; plots drawn in this block are unaffected.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context("default"):
        yield

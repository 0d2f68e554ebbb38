"""Prints the pixel counts of a screenshot: total, non-white, coloured.

Coloured = a channel spread (max - min) above 60: chart lines and areas, not
the page's black and gray text, rules and grid lines.
"""
import sys

import numpy as np
from PIL import Image

pixels = np.asarray(Image.open(sys.argv[1]).convert("RGB")).astype(np.int16)
low, high = pixels.min(axis=2), pixels.max(axis=2)
print(low.size, int((low < 245).sum()), int((high - low > 60).sum()))

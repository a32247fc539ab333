"""Label values as the user wrote them, and the class indices a model predicts.

(Being written: :class:`LabelSet` maps a dataset's label values, such as 0, 21, 22, 23,
to the classes 0..K-1 a model works with, and back.)
"""

from __future__ import annotations

__all__ = ["IGNORE_INDEX"]

IGNORE_INDEX = -1
"""The class index of voxels that count in neither the loss nor the metrics (the ignore
label, such as 255, after :meth:`LabelSet.encode`)."""

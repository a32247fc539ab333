"""Mean ± standard deviation of per-image metrics over a test set.

Segmentation papers report a metric as "mean ± std" over the test images. A
:class:`MetricAccumulator` collects the per-image values batch by batch, either by calling
metric functions itself (:meth:`~MetricAccumulator.update`) or from values computed
elsewhere (:meth:`~MetricAccumulator.add`), and summarises each metric over all images
(:meth:`~MetricAccumulator.compute`).

Values are stored as ``float64`` NumPy arrays on the CPU, so a summary depends neither on
how the images were batched nor on the device or the input kind (NumPy or torch).

Conventions:

* NaN values are left out of the mean and std and counted in ``missing``. To leave out
  images where a score is undefined, ask the metric for NaN, e.g.
  ``dice_score(..., empty_value=float("nan"))``.
* Infinite values are kept: the mean and the std become ``inf``. Surface distances return
  ``+inf`` when an object is missed entirely, and a finite mean would hide the miss. To
  report those images separately instead, have the metric return NaN for them (for
  example ``empty_pred=float("nan")``); they then show up in ``missing``.
* The std is the sample standard deviation (``ddof=1``) unless told otherwise.

Examples:
    >>> import torch
    >>> from attnunet.metrics.overlap import dice_score
    >>> acc = MetricAccumulator({"dice": dice_score}, spatial_dims=2)
    >>> pred = torch.tensor([[[1, 1], [0, 0]], [[1, 0], [0, 0]]])  # two 2 x 2 images
    >>> target = torch.tensor([[[1, 0], [0, 0]], [[1, 0], [0, 0]]])
    >>> acc.update(pred, target)["dice"].round(4)  # 2 * 1 / (2 + 1), then a perfect match
    array([0.6667, 1.    ])
    >>> acc.update(pred[0], target[0])["dice"].round(4)  # one unbatched image is one image
    array([0.6667])
    >>> print(acc.summary())
    dice  0.778 ± 0.192  (n=3)
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, astuple, dataclass
from typing import Any, TypeAlias

import numpy as np
import torch

__all__ = ["MetricAccumulator", "MetricSummary"]

Values: TypeAlias = (
    "float | Sequence[float] | Sequence[Sequence[float]] | np.ndarray | torch.Tensor"
)

# Keywords the accumulator passes itself; a user cannot route them to the metrics.
_RESERVED = ("pred", "target", "reduction")


@dataclass(frozen=True)
class MetricSummary:
    """Summary of one metric over the recorded images.

    For a metric with one value per image every field is a Python scalar. For per-class
    values (recorded as ``(B, K)``) every field is a NumPy array of shape ``(K,)``, one
    entry per class column, because NaN entries, and so the counts, differ per class.
    Compare per-class summaries field by field with NumPy (``==`` on two of them is
    ambiguous, as on arrays).

    Attributes:
        mean: mean over the values used (``inf`` if one of them is infinite; NaN if none
            is left).
        std: standard deviation with the accumulator's ``ddof`` (``inf`` if a value is
            infinite; NaN with fewer than ``ddof + 1`` values).
        count: number of values used (NaN entries excluded, infinite ones included).
        missing: number of NaN entries left out.
    """

    mean: float | np.ndarray
    std: float | np.ndarray
    count: int | np.ndarray
    missing: int | np.ndarray

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, std, count, missing)`` as 1-D arrays: length ``K``, or 1 for a scalar.

        Examples:
            >>> MetricSummary(mean=0.5, std=0.1, count=4, missing=0).as_arrays()[0]
            array([0.5])
        """
        return (
            np.atleast_1d(np.asarray(self.mean, dtype=np.float64)),
            np.atleast_1d(np.asarray(self.std, dtype=np.float64)),
            np.atleast_1d(np.asarray(self.count, dtype=np.int64)),
            np.atleast_1d(np.asarray(self.missing, dtype=np.int64)),
        )


class MetricAccumulator:
    """Collect per-image metric values batch by batch and report mean ± std.

    Args:
        metrics: optional named metric functions. :meth:`update` calls each as
            ``fn(pred, target, **kwargs, reduction="none")`` and expects per-image values,
            shape ``(B,)`` or ``(B, K)`` for ``K`` classes, as the functions of
            :mod:`attnunet.metrics` return them. Without metrics, record values with
            :meth:`add`.
        ddof: delta degrees of freedom of the std: the sum of squared deviations is
            divided by ``n - ddof``. The default 1 gives the sample standard deviation
            (Bessel's correction), what ``pandas`` and R's ``sd`` report and the usual
            reading of "± std" over a test set drawn from a larger population of images;
            0 gives the population std, NumPy's default. Papers seldom say which; for
            ``n = 12`` images they differ by about 4 %.
        **metric_kwargs: keyword arguments for the metric functions, such as
            ``spatial_dims=3`` (which the metrics of :mod:`attnunet.metrics` require),
            ``num_classes=3`` or ``spacing=(1.0, 1.0, 2.0)``. Each goes to every metric
            whose signature accepts it (by name, or through ``**kwargs``). With
            ``spatial_dims`` :meth:`update` also reads the batch size from the layout, so
            one unbatched image counts as one image.

    Raises:
        TypeError: a metric is not callable, its signature cannot be read, it takes no
            ``reduction`` argument, or a keyword in ``metric_kwargs`` is accepted by none
            of the metrics (or is ``pred``, ``target`` or ``reduction``, which the
            accumulator passes itself).
        ValueError: ``ddof`` is negative or a metric name is empty.

    Examples:
        >>> import torch
        >>> from attnunet.metrics.overlap import dice_score, iou_score
        >>> acc = MetricAccumulator({"dice": dice_score, "iou": iou_score}, num_classes=3,
        ...                         spatial_dims=1)
        >>> pred = torch.tensor([[0, 1, 1, 2], [0, 2, 2, 0]])
        >>> target = torch.tensor([[0, 1, 2, 2], [0, 2, 2, 0]])
        >>> batch = acc.update(pred, target)
        >>> batch["dice"].shape  # 2 images, classes 1 and 2
        (2, 2)
        >>> acc.add("volume_error", [0.5, 1.5])  # values computed elsewhere
        >>> print(acc.summary(digits=2))  # class 1 is absent from image 2: left out
        dice[1]       0.67 ± nan  (n=1, missing=1)
        dice[2]       0.83 ± 0.24  (n=2)
        dice[mean]    0.83 ± 0.24  (n=2)
        iou[1]        0.50 ± nan  (n=1, missing=1)
        iou[2]        0.75 ± 0.35  (n=2)
        iou[mean]     0.75 ± 0.35  (n=2)
        volume_error  1.00 ± 0.71  (n=2)
    """

    def __init__(
        self,
        metrics: Mapping[str, Callable[..., Any]] | None = None,
        *,
        ddof: int = 1,
        **metric_kwargs: Any,
    ) -> None:
        if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
            raise ValueError(f"ddof must be an int >= 0, got {ddof!r}")
        self.ddof = ddof
        self._metrics: dict[str, Callable[..., Any]] = dict(metrics or {})
        self._metric_kwargs = dict(metric_kwargs)
        self._kwargs_for = _route_kwargs(self._metrics, self._metric_kwargs)
        # metrics that will refuse every batch for want of spatial_dims (read once here)
        self._lacking_spatial_dims = (
            []
            if "spatial_dims" in self._metric_kwargs
            else [n for n, fn in self._metrics.items() if _needs(fn, "spatial_dims")]
        )
        # name -> recorded chunks, each (n,) or (n, K); name -> K, or None for (n,)
        self._chunks: dict[str, list[np.ndarray]] = {}
        self._width: dict[str, int | None] = {}

    # ------------------------------------------------------------------ recording

    def update(self, pred: Any, target: Any) -> dict[str, np.ndarray]:
        """Score one batch with every metric and record the per-image values.

        Either every metric's values are recorded or, if one fails, none are.

        Args:
            pred: the prediction batch, passed unchanged to the metric functions.
            target: the ground truth batch, passed unchanged as well.

        Returns:
            This batch's values per metric name, as ``float64`` NumPy arrays of shape
            ``(B,)`` or ``(B, K)`` (copies: changing them does not change the record).

        Raises:
            RuntimeError: the accumulator was built without metric functions.
            ValueError: a metric returned something other than one value (or one row of
                ``K`` values) per image, or a class count ``K`` different from before.
            TypeError: a metric returned non-numeric values.

        Examples:
            >>> import numpy as np
            >>> from attnunet.metrics.overlap import iou_score
            >>> acc = MetricAccumulator({"iou": iou_score}, spatial_dims=2)
            >>> acc.update(np.array([[1, 1, 0]]), np.array([[1, 0, 0]]))  # one 1 x 3 image
            {'iou': array([0.5])}
        """
        if not self._metrics:
            raise RuntimeError(
                "this MetricAccumulator has no metric functions: pass metrics={name: fn} "
                "when building it, or record precomputed values with add(name, values)"
            )
        if self._lacking_spatial_dims:
            raise ValueError(
                f"metric(s) {', '.join(map(repr, self._lacking_spatial_dims))} need "
                f"spatial_dims, the number of spatial axes, to read the batch: build the "
                f"accumulator with it, e.g. MetricAccumulator({{...}}, spatial_dims=2) for "
                f"images or 3 for volumes"
            )
        batch = self._batch_size(pred)
        results: dict[str, np.ndarray] = {}
        for name, fn in self._metrics.items():
            raw = fn(pred, target, **self._kwargs_for[name], reduction="none")
            values = _as_float64(raw, f"metric {name!r}", scalar_ok=False)
            if batch is None:  # no layout to read the batch from: the metrics must agree
                batch = int(values.shape[0])
            if values.shape[0] != batch:
                raise ValueError(
                    f"metric {name!r} returned shape {list(values.shape)} for a batch of "
                    f"{batch} images; expected one value (or one row of per-class values) "
                    f"per image"
                )
            self._check_width(name, values)
            results[name] = values
        for name, values in results.items():
            self._record(name, values)
        return {name: values.copy() for name, values in results.items()}

    def add(self, name: str, values: Values) -> None:
        """Record precomputed per-image values under ``name``.

        Args:
            name: the metric's name; it may or may not be one of the metric functions.
            values: a scalar (one image), a list, or an array or tensor of shape ``(B,)``
                (one value per image) or ``(B, K)`` (``K`` per-class values per image).
                NumPy or torch, any dtype of real numbers, any device.

        Raises:
            ValueError: ``values`` has more than two axes, or ``name`` was recorded
                before with a different per-class width (``(B,)`` versus ``(B, K)``, or
                another ``K``).
            TypeError: ``name`` is not a string, or ``values`` are not real numbers.

        Examples:
            >>> acc = MetricAccumulator()
            >>> acc.add("hd95", [2.0, 4.0])
            >>> acc.add("hd95", 3.0)
            >>> acc["hd95"]
            MetricSummary(mean=3.0, std=1.0, count=3, missing=0)
        """
        _check_name(name)
        array = _as_float64(values, f"values for {name!r}", scalar_ok=True)
        self._check_width(name, array)
        self._record(name, array)

    def merge(self, other: MetricAccumulator) -> MetricAccumulator:
        """Append every value recorded by ``other``, e.g. the accumulator of another worker.

        The result equals accumulating ``other``'s images after this one's. This
        accumulator keeps its own metric functions and ``ddof``; ``other`` is unchanged.

        Args:
            other: the accumulator to take the values from.

        Returns:
            This accumulator, so that ``total = parts[0].merge(parts[1]).merge(parts[2])``
            works.

        Raises:
            TypeError: ``other`` is not a :class:`MetricAccumulator`.
            ValueError: a name holds values of a different per-class width in the two;
                nothing is merged then.

        Examples:
            >>> a, b = MetricAccumulator(), MetricAccumulator()
            >>> a.add("dice", [0.8, 0.9])
            >>> b.add("dice", [0.7])
            >>> a.merge(b).values("dice")
            array([0.8, 0.9, 0.7])
        """
        if not isinstance(other, MetricAccumulator):
            raise TypeError(f"can only merge a MetricAccumulator, got {type(other).__name__}")
        incoming = {name: other._data(name) for name in other._chunks}
        for name, values in incoming.items():
            self._check_width(name, values)
        for name, values in incoming.items():
            self._record(name, values.copy())
        return self

    def reset(self) -> None:
        """Forget every recorded value; the metric functions and their keywords stay."""
        self._chunks.clear()
        self._width.clear()

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        """Number of images seen: the most values recorded under any one name.

        With :meth:`update` alone every name holds one value (or one row) per image.
        """
        return max((sum(len(c) for c in chunks) for chunks in self._chunks.values()), default=0)

    def __contains__(self, name: object) -> bool:
        return name in self._chunks

    def __getitem__(self, name: str) -> MetricSummary:
        """The summary of one metric, as in :meth:`compute`.

        Raises:
            KeyError: no value was recorded under ``name``.
        """
        return self._summarise(name)

    def values(self, name: str) -> np.ndarray:
        """All values recorded under ``name``, in the order they came in.

        Args:
            name: a metric name.

        Returns:
            A new ``float64`` array of shape ``(N,)`` or ``(N, K)``, NaN and infinite
            entries included.

        Raises:
            KeyError: no value was recorded under ``name``.
        """
        return self._data(name).copy()

    def overall(self, name: str) -> MetricSummary:
        """The summary over images of each image's mean over its scored classes.

        For per-class values ``(N, K)`` every image first gets the mean of its non-NaN
        classes (a class absent from both prediction and target is NaN by default, so it
        is left out), then the mean ± std is taken over images; an image with no scored
        class counts as missing. This is the "mean Dice" of a paper that averages classes
        per case. For one value per image it equals ``self[name]``.

        Args:
            name: a metric name.

        Returns:
            A :class:`MetricSummary` of Python scalars.

        Raises:
            KeyError: no value was recorded under ``name``.

        Examples:
            >>> acc = MetricAccumulator()
            >>> acc.add("dice", [[0.5, float("nan")], [0.7, 0.9], [0.9, 0.7]])
            >>> s = acc.overall("dice")  # image means 0.5, 0.8, 0.8
            >>> round(s.mean, 6), round(s.std, 6), s.count, s.missing
            (0.7, 0.173205, 3, 0)
        """
        data = self._data(name)
        if data.ndim == 2:
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
                data = np.nanmean(data, axis=1) if data.shape[1] else np.full(len(data), np.nan)
        return MetricSummary(*_stats(data, self.ddof))

    def compute(self) -> dict[str, MetricSummary]:
        """Mean, std, count and missing count of every metric with recorded values.

        Returns:
            ``{name: MetricSummary}`` in the order the names were first recorded; empty if
            nothing was recorded. NaN entries are left out (and counted in ``missing``),
            infinite ones kept. See :class:`MetricSummary`.

        Examples:
            >>> acc = MetricAccumulator()
            >>> acc.add("dice", [[0.5, float("nan")], [0.7, 0.9], [0.9, 0.7]])
            >>> s = acc.compute()["dice"]
            >>> s.mean, s.count, s.missing
            (array([0.7, 0.8]), array([3, 2]), array([0, 1]))
        """
        return {name: self._summarise(name) for name in self._chunks}

    def summary(self, digits: int = 3, *, first_class: int | None = None) -> str:
        """A human-readable table of ``name  mean ± std  (n=count)`` lines.

        Per-class metrics get one line per class, ``name[c]``, and a line ``name[mean]``
        for :meth:`overall`, each image's mean over its scored classes summarised over
        images. A ``missing=`` count is added where NaN entries were left out.

        Args:
            digits: decimals to print.
            first_class: the class label of the first per-class column. By default 0 if
                ``include_background=True`` was passed as a metric keyword and 1
                otherwise, since the metrics leave background class 0 out by default.

        Returns:
            One line per metric (or per metric and class), names aligned; an empty string
            if nothing was recorded.

        Raises:
            ValueError: ``digits`` is not an int >= 0.

        Examples:
            >>> acc = MetricAccumulator()
            >>> acc.add("dice", [0.81, 0.85, 0.95])
            >>> acc.add("hd95", [3.0, float("inf"), float("nan")])
            >>> print(acc.summary(digits=2))
            dice  0.87 ± 0.07  (n=3)
            hd95  inf ± inf  (n=2, missing=1)
        """
        if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
            raise ValueError(f"digits must be an int >= 0, got {digits!r}")
        rows = [
            (label, float(mean), float(std), int(count), int(missing))
            for label, (mean, std, count, missing) in self._rows(first_class)
        ]
        width = max((len(row[0]) for row in rows), default=0)
        lines = []
        for label, mean, std, count, missing in rows:
            extra = f", missing={missing}" if missing else ""
            lines.append(
                f"{label.ljust(width)}  {mean:.{digits}f} ± {std:.{digits}f}  (n={count}{extra})"
            )
        return "\n".join(lines)

    def to_dict(self, *, first_class: int | None = None) -> dict[str, dict[str, Any]]:
        """The summaries as plain Python floats, ints and lists, e.g. for a results file.

        Args:
            first_class: the class label of the first per-class column, as in
                :meth:`summary`.

        Returns:
            ``{name: {"mean", "std", "count", "missing"}}`` with scalars, or with lists
            (one entry per class), a ``"classes"`` list of labels and an ``"overall"`` dict
            (:meth:`overall`, the per-image mean over classes) for per-class metrics.
            NaN and infinite means stay floats: :func:`json.dumps` writes them as ``NaN``
            and ``Infinity``, which Python reads back but strict JSON parsers reject.

        Examples:
            >>> import json
            >>> acc = MetricAccumulator()
            >>> acc.add("dice", [[0.5, 1.0], [1.0, 1.0]])
            >>> d = acc.to_dict()["dice"]
            >>> json.dumps({k: d[k] for k in ("mean", "count", "classes")})
            '{"mean": [0.75, 1.0], "count": [2, 2], "classes": [1, 2]}'
            >>> d["overall"]  # each image's mean over its classes (0.75, 1.0), over images
            {'mean': 0.875, 'std': 0.1767766952966369, 'count': 2, 'missing': 0}
        """
        first = self._first_class(first_class)
        out: dict[str, dict[str, Any]] = {}
        for name, s in self.compute().items():
            fields = dict(zip(("mean", "std", "count", "missing"), s.as_arrays(), strict=True))
            if isinstance(s.mean, np.ndarray):  # per class: lists, and the class labels
                out[name] = {key: array.tolist() for key, array in fields.items()}
                out[name]["classes"] = [first + k for k in range(len(fields["mean"]))]
                out[name]["overall"] = asdict(self.overall(name))
            else:
                out[name] = {key: array[0].item() for key, array in fields.items()}
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(metrics={list(self._metrics)}, "
            f"recorded={list(self._chunks)}, images={len(self)}, ddof={self.ddof})"
        )

    # ------------------------------------------------------------------ internals

    def _batch_size(self, pred: Any) -> int | None:
        """The number of images in ``pred`` under the ``spatial_dims`` metric keyword: an
        unbatched image is one image; None without the keyword."""
        shape = getattr(pred, "shape", None)
        spatial_dims = self._metric_kwargs.get("spatial_dims")
        if shape is None or not isinstance(spatial_dims, int) or isinstance(spatial_dims, bool):
            return None
        if len(shape) == spatial_dims:  # (one-hot input always has its batch axis)
            return 1
        return int(shape[0]) if len(shape) > spatial_dims else None

    def _check_width(self, name: str, values: np.ndarray) -> None:
        width = None if values.ndim == 1 else int(values.shape[1])
        if name in self._width and self._width[name] != width:
            raise ValueError(
                f"{name!r} was recorded as {_describe(self._width[name])} per image, now "
                f"got shape {list(values.shape)} ({_describe(width)} per image); the "
                f"per-class width must stay the same"
            )

    def _record(self, name: str, values: np.ndarray) -> None:
        if values.ndim == 1 and values.shape[0] == 0:
            return  # an empty (0,) batch says nothing, not even whether values are per class
        self._width.setdefault(name, None if values.ndim == 1 else int(values.shape[1]))
        self._chunks.setdefault(name, []).append(values)

    def _data(self, name: str) -> np.ndarray:
        """The values of ``name`` as one array, kept as the single chunk from then on."""
        chunks = self._chunks.get(name)
        if chunks is None:
            if name in self._metrics:
                raise KeyError(f"no values recorded for {name!r} yet: call update() first")
            known = ", ".join(map(repr, self._chunks)) or "none"
            raise KeyError(f"no values recorded under {name!r}; recorded names: {known}")
        if len(chunks) > 1:
            chunks[:] = [np.concatenate(chunks)]
        return chunks[0]

    def _summarise(self, name: str) -> MetricSummary:
        data = self._data(name)
        if data.ndim == 1:
            mean, std, count, missing = _stats(data, self.ddof)
            return MetricSummary(mean, std, count, missing)
        columns = [_stats(data[:, k], self.ddof) for k in range(data.shape[1])]
        return MetricSummary(
            mean=np.array([c[0] for c in columns], dtype=np.float64),
            std=np.array([c[1] for c in columns], dtype=np.float64),
            count=np.array([c[2] for c in columns], dtype=np.int64),
            missing=np.array([c[3] for c in columns], dtype=np.int64),
        )

    def _rows(self, first_class: int | None) -> list[tuple[str, tuple[Any, Any, Any, Any]]]:
        """``(label, (mean, std, count, missing))`` per metric, or per metric and class."""
        first = self._first_class(first_class)
        rows: list[tuple[str, tuple[Any, Any, Any, Any]]] = []
        for name, summary in self.compute().items():
            mean, std, count, missing = summary.as_arrays()
            if not isinstance(summary.mean, np.ndarray):
                rows.append((name, (mean[0], std[0], count[0], missing[0])))
                continue
            for k in range(len(mean)):
                rows.append((f"{name}[{first + k}]", (mean[k], std[k], count[k], missing[k])))
            rows.append((f"{name}[mean]", astuple(self.overall(name))))
        return rows

    def _first_class(self, first_class: int | None) -> int:
        if first_class is not None:
            return int(first_class)
        return 0 if self._metric_kwargs.get("include_background", False) else 1


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"a metric name must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError("a metric name must not be empty")


def _route_kwargs(
    metrics: dict[str, Callable[..., Any]], metric_kwargs: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """For each metric, the keywords of ``metric_kwargs`` its signature accepts."""
    reserved = sorted(set(metric_kwargs) & set(_RESERVED))
    if reserved:
        raise TypeError(
            f"{', '.join(reserved)} cannot be passed as metric keywords: the accumulator "
            f"passes pred and target from update() and always asks for reduction='none'"
        )
    routed: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for name, fn in metrics.items():
        _check_name(name)
        if not callable(fn):
            raise TypeError(f"metric {name!r} must be callable, got {type(fn).__name__}")
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"cannot read the signature of metric {name!r} to route keywords to it; "
                f"wrap it in a Python function"
            ) from err
        any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        named = {
            p.name
            for p in params
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        if not any_keyword and "reduction" not in named:
            raise TypeError(
                f"metric {name!r} takes no 'reduction' argument; metrics are called as "
                f"fn(pred, target, **kwargs, reduction='none') and must return per-image "
                f"values"
            )
        routed[name] = {k: v for k, v in metric_kwargs.items() if any_keyword or k in named}
        used.update(routed[name])
    unused = [k for k in metric_kwargs if k not in used]
    if unused:
        raise TypeError(
            f"metric keyword(s) {', '.join(map(repr, unused))} accepted by none of the "
            f"metrics ({', '.join(map(repr, metrics)) or 'none given'})"
        )
    return routed


def _needs(fn: Callable[..., Any], keyword: str) -> bool:
    """Whether ``fn`` has a parameter ``keyword`` left unset (no default, or None): a
    ``functools.partial`` that binds it, or a default value, satisfies it."""
    try:
        param = inspect.signature(fn).parameters.get(keyword)
    except (TypeError, ValueError):
        return False
    return param is not None and param.default in (inspect.Parameter.empty, None)


def _as_float64(values: object, label: str, *, scalar_ok: bool) -> np.ndarray:
    """``values`` as a new ``float64`` NumPy array of shape ``(n,)`` or ``(n, K)``."""
    if isinstance(values, torch.Tensor):
        if values.is_complex():
            raise TypeError(f"{label} must be real numbers, got {values.dtype}")
        array = values.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
    else:
        array = np.asarray(values)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{label} must be real numbers, got an array of dtype {array.dtype}")
        array = array.astype(np.float64)  # always a copy
    if array.ndim == 0:
        if not scalar_ok:
            raise ValueError(
                f"{label} returned a single number; with reduction='none' a metric must "
                f"return one value (or one row of per-class values) per image"
            )
        array = array.reshape(1)
    if array.ndim > 2:
        raise ValueError(
            f"{label} must have shape (B,) or (B, K) (per image, per class), got "
            f"{list(array.shape)}"
        )
    return array


def _stats(x: np.ndarray, ddof: int) -> tuple[float, float, int, int]:
    """``(mean, std, count, missing)`` of a 1-D array, NaN left out, infinities kept."""
    nan = np.isnan(x)
    kept = x[~nan]
    count, missing = int(kept.size), int(nan.sum())
    if count == 0:
        return math.nan, math.nan, 0, missing
    with np.errstate(invalid="ignore"):  # +inf and -inf together: NaN mean, no warning
        mean = float(np.mean(kept))
    if count <= ddof:
        std = math.nan
    elif np.isinf(kept).any():
        std = math.inf
    else:
        std = float(np.std(kept, ddof=ddof))
    return mean, std, count, missing


def _describe(width: int | None) -> str:
    return "one value" if width is None else f"{width} per-class values"

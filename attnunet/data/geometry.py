"""Where the voxels of an image lie in the world: :class:`Geometry`.

A :class:`Geometry` describes the spatial axes of an array as
:func:`~attnunet.data.read_image` (channels removed) or :func:`~attnunet.data.read_mask`
return it: its shape, the voxel size along each axis (``spacing``, in mm) and a 4x4
``affine`` that maps array indices, in the array's axis order, to RAS+ world
coordinates in mm: the world's x, y and z grow towards the patient's Right, Anterior
and Superior (the NIfTI convention). Files without geometry (PNG, JPEG, TIFF, NumPy)
have ``spacing`` and ``affine`` ``None``.

Arrays of NIfTI, NRRD, MetaImage and DICOM files have the same axis order: the file's
index order ``(i, j, k)``, which ITK calls ``(x, y, z)``; the same scan in two formats
gives the same array. In detail:

* NIfTI: nibabel's ``(i, j, k)``; ``affine`` is nibabel's ``img.affine`` (the sform when
  its code is set, else the qform), ``spacing`` the header's zooms.
* NRRD, MetaImage, DICOM (read with SimpleITK): ITK's index order ``(x, y, z)``, that
  is ``SimpleITK.GetArrayFromImage``'s ``(z, y, x)`` reversed, so that ``array[i, j, k]``
  is the voxel at ITK index ``(i, j, k)``; ``spacing`` is ``GetSpacing()``, and
  ``affine`` is built from the origin, direction and spacing, with ITK's LPS world axes
  turned into RAS (the first two world axes change sign); its columns are ITK's x, y, z.

So a NIfTI file and an NRRD file holding the same scan give equal arrays, spacings and
affines (up to the rounding of their headers).

Examples:
    >>> g = Geometry((2, 3), (0.5, 0.25), np.diag([0.5, 0.25, 1.0, 1.0]), "NIfTI")
    >>> g.unit, g.to_dict()["spacing"], Geometry.plain((2, 3)).unit
    ('mm', [0.5, 0.25], 'px')
    >>> print(g.mismatch(Geometry((2, 3), (0.5, 0.3), None, "NRRD")))
    spacing (0.5, 0.25) mm vs (0.5, 0.3) mm
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Geometry"]


@dataclass(frozen=True, eq=False)
class Geometry:
    """The voxel grid of an array in the world: shape, spacing, affine and source format.

    Two geometries are equal (``==``) when shape, spacing, format and affine are equal;
    ``header`` is not compared. Use :meth:`mismatch` to compare within a tolerance.

    Attributes:
        shape: the spatial shape, in the array's axis order.
        spacing: the voxel size along each spatial axis of the array, in mm; ``None``
            when the file does not store one (PNG, JPEG, NumPy, TIFF).
        affine: a read-only 4x4 ``float64`` array mapping array indices (in the array's
            axis order) to RAS+ world coordinates in mm; ``None`` without geometry. A 2D
            array's affine is still 4x4: its first two columns are the two axes (the
            third maps the axis the image does not have).
        format: the file format it came from: ``"NIfTI"``, ``"NRRD"``, ``"MetaImage"``,
            ``"DICOM"``, ``"PNG"``, ``"JPEG"``, ``"TIFF"`` or ``"NumPy"``.
        header: what a writer needs to write the same header back (not compared, not
            shown): the nibabel header object for NIfTI; for SimpleITK files a dict with
            ``origin``, ``spacing``, ``direction`` (ITK order, as SimpleITK gives them)
            and ``metadata`` (the file's metadata dictionary); ``None`` otherwise.

    Raises:
        ValueError: for a spacing of another length than ``shape``, or an affine that
            is not 4x4.

    Examples:
        >>> affine = np.diag([0.7, 0.8, 3.0, 1.0])
        >>> g = Geometry((4, 5, 6), (0.7, 0.8, 3.0), affine, "NIfTI")
        >>> g == Geometry((4, 5, 6), (0.7, 0.8, 3.0), affine.copy(), "NIfTI", header="x")
        True
        >>> (g.affine @ [1, 1, 1, 1])[:3].tolist()
        [0.7, 0.8, 3.0]
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None
    affine: np.ndarray | None
    format: str
    header: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        object.__setattr__(self, "shape", shape)
        if self.spacing is not None:
            spacing = tuple(float(s) for s in self.spacing)
            if len(spacing) != len(shape):
                raise ValueError(
                    f"spacing {spacing} has {len(spacing)} values for {len(shape)} axes "
                    f"(shape {shape})"
                )
            object.__setattr__(self, "spacing", spacing)
        if self.affine is not None:
            affine = np.array(self.affine, dtype=np.float64)
            if affine.shape != (4, 4):
                raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
            affine.setflags(write=False)
            object.__setattr__(self, "affine", affine)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Geometry):
            return NotImplemented
        if (self.shape, self.spacing, self.format) != (other.shape, other.spacing, other.format):
            return False
        if self.affine is None or other.affine is None:
            return self.affine is None and other.affine is None
        return bool(np.array_equal(self.affine, other.affine))

    def __hash__(self) -> int:
        return hash((self.shape, self.spacing, self.format))

    @classmethod
    def plain(cls, shape: Sequence[int], format: str = "NumPy") -> Geometry:
        """The geometry of a file that stores none: only a shape (unit ``"px"``).

        Args:
            shape: the spatial shape.
            format: the file format (``"PNG"``, ``"JPEG"``, ``"TIFF"``, ``"NumPy"``).

        Examples:
            >>> Geometry.plain((64, 64), "PNG")
            Geometry(shape=(64, 64), spacing=None, affine=None, format='PNG')
        """
        return cls(tuple(shape), None, None, format)

    @property
    def unit(self) -> str:
        """``"mm"`` when the spacing is known, else ``"px"`` (voxels).

        Examples:
            >>> Geometry((2, 2), (1.0, 1.0), None, "NRRD").unit
            'mm'
        """
        return "mm" if self.spacing is not None else "px"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: shape, spacing, affine (rounded to 6 decimals), format.

        The header is left out. Used in data fingerprints, so equal geometries give
        equal dictionaries (``-0.0`` is written as ``0.0``).

        Examples:
            >>> Geometry((2, 2), (0.5, 0.5), np.diag([-0.5, 0.5, 1, 1]), "NRRD").to_dict()
            ... # doctest: +NORMALIZE_WHITESPACE
            {'shape': [2, 2], 'spacing': [0.5, 0.5],
             'affine': [[-0.5, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0],
                        [0.0, 0.0, 0.0, 1.0]],
             'format': 'NRRD'}
        """
        return {
            "shape": list(self.shape),
            "spacing": None if self.spacing is None else [_round(s) for s in self.spacing],
            "affine": None
            if self.affine is None
            else [[_round(v) for v in row] for row in self.affine.tolist()],
            "format": self.format,
        }

    def mismatch(
        self, other: Geometry, *, rtol: float = 1e-3, atol: float = 1e-3, origin_tol: float = 0.05
    ) -> str | None:
        """Say in words how ``other`` differs from this geometry, or ``None`` if it agrees.

        Each part is compared with a tolerance fit for it:

        * shapes must be equal;
        * spacings relatively: ``|a - b| <= rtol * |b|`` for each axis (``1e-3``: a
          0.7 mm voxel may be 0.7007 mm on the other side);
        * the axis directions (the direction cosines: the affine's columns for the array's
          axes divided by their lengths) absolutely, within ``atol`` (``1e-3``, about
          0.06 degrees);
        * the origin (the world point of voxel 0, the affine's translation) absolutely:
          the two may be at most ``origin_tol`` times the smallest voxel size apart, in mm
          (0.05 x 0.5 mm = 0.025 mm for 0.5 mm voxels: header rounding of 1e-4 mm passes,
          a shift of 0.4 mm is refused however far from the world's origin the scan lies).

        A spacing or affine that is ``None`` on either side is not compared (a PNG mask
        agrees with any image of its shape). Only the affine's columns of the array's axes
        are compared (a 2D array's third column maps an axis it does not have).

        Args:
            other: the geometry to compare with.
            rtol: relative tolerance of the spacing.
            atol: absolute tolerance of the direction cosines.
            origin_tol: the origin tolerance, as a fraction of the smallest voxel size.

        Returns:
            ``None`` when they agree, else the differences joined by ``"; "``.

        Examples:
            >>> a = Geometry((4, 4), (1.0, 1.0), np.eye(4), "NIfTI")
            >>> a.mismatch(Geometry((4, 4), (1.0, 1.0001), np.eye(4), "NRRD")) is None
            True
            >>> shifted = np.eye(4)
            >>> shifted[0, 3] = 5.0
            >>> print(a.mismatch(Geometry((4, 5), None, shifted, "PNG")))
            shape (4, 4) vs (4, 5); affine: the origin (voxel 0) moves by 5 mm
        """
        problems = []
        if self.shape != other.shape:
            problems.append(f"shape {self.shape} vs {other.shape}")
        spacings = self.spacing is not None and other.spacing is not None
        if self.spacing is not None and other.spacing is not None:
            mine, theirs = self.spacing, other.spacing
            if len(mine) != len(theirs) or not np.allclose(mine, theirs, rtol=rtol, atol=0.0):
                problems.append(f"spacing {_fmt(mine)} mm vs {_fmt(theirs)} mm")
        if self.affine is not None and other.affine is not None:
            axes = min(len(self.shape), len(other.shape), 3)
            sizes = [g.spacing for g in (self, other) if g.spacing is not None]
            tolerances = _Tolerances(rtol, atol, origin_tol, not spacings)
            problem = _affine_mismatch(self.affine, other.affine, axes, sizes, tolerances)
            if problem:
                problems.append(problem)
        return "; ".join(problems) or None


class _Tolerances(NamedTuple):
    """How :meth:`Geometry.mismatch` compares two affines."""

    rtol: float  # voxel sizes, relative
    atol: float  # direction cosines, absolute
    origin: float  # origin distance, as a fraction of the smallest voxel size
    sizes: bool  # compare the affines' voxel sizes (when the spacings were not compared)


def _round(value: float) -> float:
    return round(float(value), 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _affine_mismatch(
    a: np.ndarray,
    b: np.ndarray,
    axes: int,
    spacings: Sequence[Sequence[float]],
    tol: _Tolerances,
) -> str | None:
    """The difference of two affines in words (origin, then axes), or ``None``.

    ``axes`` columns are compared (the array's axes); ``spacings`` are the known voxel
    sizes of the two sides, which set the origin's tolerance (the affines' column lengths
    when none is known).
    """
    lengths_a = np.linalg.norm(a[:3, :axes], axis=0)
    lengths_b = np.linalg.norm(b[:3, :axes], axis=0)
    known = [float(v) for sizes in spacings for v in sizes]
    smallest = min(known) if known else float(min(*lengths_a, *lengths_b))
    parts = []
    distance = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
    if distance > tol.origin * smallest:
        parts.append(f"the origin (voxel 0) moves by {distance:.4g} mm")
    cosines_a = a[:3, :axes] / np.where(lengths_a > 0, lengths_a, 1.0)
    cosines_b = b[:3, :axes] / np.where(lengths_b > 0, lengths_b, 1.0)
    worst = float(np.abs(cosines_a - cosines_b).max())
    if worst > tol.atol:
        parts.append(f"the axis directions differ (by up to {worst:.4g} in a direction cosine)")
    if tol.sizes and not np.allclose(lengths_a, lengths_b, rtol=tol.rtol, atol=0.0):
        parts.append(f"the voxel sizes differ ({_fmt(lengths_a)} mm vs {_fmt(lengths_b)} mm)")
    return "affine: " + ", ".join(parts) if parts else None


# ----------------------------------------------------------------------------- ITK <-> affine

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _itk_affine(
    origin: Sequence[float], spacing: Sequence[float], direction: Sequence[float] | np.ndarray
) -> np.ndarray:
    """The 4x4 RAS affine of an ITK image for indices in ITK order ``(x, y, z)``.

    ``origin``, ``spacing`` and ``direction`` (row-major, ``n * n`` values) are in ITK
    order and ITK's LPS world, as SimpleITK gives them for an ``n``-D image (2 or 3).
    """
    n = len(spacing)
    matrix = np.asarray(direction, np.float64).reshape(n, n) * np.asarray(spacing, np.float64)
    affine = np.eye(4)
    affine[:n, :n] = matrix  # column c of the affine is array axis c = ITK axis c
    affine[:n, 3] = origin
    return _LPS_TO_RAS @ affine


def _itk_from_affine(
    affine: np.ndarray, ndim: int
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(origin, spacing, direction)`` in ITK order and LPS for an ``(x, y, z)`` affine.

    The inverse of :func:`_itk_affine` for an ``ndim``-D image (2 or 3). A 2D image
    keeps the first two rows and columns (its in-plane part).

    Raises:
        ValueError: when an axis of the affine has length 0.
    """
    lps = _LPS_TO_RAS @ np.asarray(affine, np.float64)
    matrix = lps[:ndim, :ndim]
    spacing = np.linalg.norm(matrix, axis=0)
    if not (spacing > 0).all():
        raise ValueError(f"the affine has an axis of length 0: {np.asarray(affine).tolist()}")
    direction = matrix / spacing
    origin = lps[:ndim, 3]
    return (
        tuple(float(v) for v in origin),
        tuple(float(v) for v in spacing),
        tuple(float(v) for v in direction.ravel()),
    )

"""Primitive shapes of the phantom as signed-distance-like functions in the patient frame.

Every shape lives in the phantom's canonical patient frame (millimetres, LPS axes: x to the
patient's left, y posterior, z superior; see :mod:`AutoCTVLib.phantom.frame`). ``distance(x, y,
z)`` takes three float32 arrays of canonical coordinates (any common shape) and returns a float32
array of the same shape that is negative inside, zero on the surface and positive outside. It is
the exact Euclidean distance for spheres, round tubes and half-spaces, and the radial distance
(along the ray from the shape's axis or centre) for ellipses, which is close enough for wall and
cortex thicknesses of a few millimetres.

``bounds()`` returns a conservative axis-aligned box (lo, hi) in canonical mm; ``pieces()`` splits
a shape into parts whose union is the shape, so a rasteriser can evaluate each part only inside
its own small box (a tube becomes one piece per segment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

_EPS = np.float32(1e-6)
_UNBOUNDED = 1e9


def _f(value: float) -> float:
    """A plain Python float, so that float32 arrays stay float32 (NumPy 2 promotion rules)."""
    return float(value)


class Shape:
    """Base class: a region of the canonical patient frame (see the module docstring).

    ``lipschitz`` bounds the ratio |distance(p)| / (true distance of p to the surface), and how
    fast ``distance`` changes per mm moved (1 for true distances); ``z_lipschitz`` is an extra
    change per mm of canonical z (solids whose cross-section varies along z). The rasteriser
    relies on both to skip voxels far from the surface.
    """

    @property
    def lipschitz(self) -> float:
        return 1.0

    @property
    def z_lipschitz(self) -> float:
        return 0.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def pieces(self) -> Sequence[Shape]:
        return (self,)


@dataclass(frozen=True, eq=False)
class Wobble:
    """Low-frequency deformation of a shape's radius: ``r · (1 + Σ a·sin(f·u + φ))``.

    ``u`` are the shape's normalised local coordinates (about -1..1 across the shape), so
    frequencies of 1–3 rad per half-width give smooth, organic bumps.

    Attributes:
        frequencies: (n, 3) frequencies in radians per normalised unit.
        amplitudes: (n,) relative amplitudes (0.05 = ±5 % of the radius).
        phases: (n,) phases in radians.
    """

    frequencies: np.ndarray
    amplitudes: np.ndarray
    phases: np.ndarray

    @classmethod
    def random(
        cls, rng: np.random.Generator, amplitude: float, terms: int = 3, frequency: float = 2.0
    ) -> Wobble:
        """``terms`` random smooth bumps of total relative amplitude about ``amplitude``."""
        directions = rng.normal(size=(terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        frequencies = directions * rng.uniform(0.6, 1.4, size=(terms, 1)) * frequency
        amplitudes = rng.uniform(0.5, 1.0, size=terms) * amplitude / np.sqrt(terms)
        phases = rng.uniform(0.0, 2.0 * np.pi, size=terms)
        return cls(frequencies, amplitudes, phases)

    @property
    def max_relative(self) -> float:
        return float(np.sum(np.abs(self.amplitudes)))

    def factor(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """1 + the deformation at normalised coordinates (u, v, w)."""
        total = np.ones_like(u)
        for (fu, fv, fw), amplitude, phase in zip(self.frequencies, self.amplitudes, self.phases):
            total += _f(amplitude) * np.sin(u * _f(fu) + v * _f(fv) + w * _f(fw) + _f(phase))
        return total


@dataclass(frozen=True, eq=False)
class Ellipsoid(Shape):
    """An ellipsoid, optionally rotated and deformed.

    Attributes:
        center: (3,) canonical mm.
        radii: (3,) semi-axes in mm along the local axes.
        axes: 3×3 matrix whose columns are the local axes in the canonical frame.
        wobble: optional low-frequency radius deformation.
    """

    center: np.ndarray
    radii: np.ndarray
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))
    wobble: Wobble | None = None

    @property
    def lipschitz(self) -> float:
        grow = 1.0 + (self.wobble.max_relative if self.wobble else 0.0)
        return float(np.max(self.radii) / np.min(self.radii)) * grow * grow

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        grow = 1.0 + (self.wobble.max_relative if self.wobble else 0.0)
        half = np.abs(np.asarray(self.axes)) @ (np.asarray(self.radii) * grow)
        center = np.asarray(self.center, dtype=float)
        return center - half, center + half

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        dx, dy, dz = x - _f(self.center[0]), y - _f(self.center[1]), z - _f(self.center[2])
        axes = np.asarray(self.axes, dtype=float)
        local = [dx * _f(axes[0, c]) + dy * _f(axes[1, c]) + dz * _f(axes[2, c]) for c in range(3)]
        u, v, w = (local[c] * _f(1.0 / self.radii[c]) for c in range(3))
        norm = np.sqrt(u * u + v * v + w * w)
        gradient = np.sqrt(
            (u * _f(1.0 / self.radii[0])) ** 2
            + (v * _f(1.0 / self.radii[1])) ** 2
            + (w * _f(1.0 / self.radii[2])) ** 2
        )
        if self.wobble is not None:
            factor = self.wobble.factor(u, v, w)
            norm /= factor
            gradient /= factor
        return _first_order_distance(norm, gradient)


def _first_order_distance(norm: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """``n (n − 1) / |∇(n²/2)|``-style distance from a normalised radius ``n`` (1 on the
    surface) and ``gradient`` = |∇(n²)|/(2n)·n, i.e. |q/r²| for an ellipsoid: exact on the
    surface, changes by about 1 mm per mm near it, negative inside (the exact centre too)."""
    out = norm - 1.0
    out *= norm
    out -= np.float32(1e-6)
    out /= np.maximum(gradient, _EPS)
    return out.astype(np.float32, copy=False)


@dataclass(frozen=True, eq=False)
class Segment(Shape):
    """One piece of a tube: a cone frustum with elliptic cross-section and round or flat ends.

    Attributes:
        start, end: (3,) centre-line end points, canonical mm.
        radii_start, radii_end: (2,) semi-axes (along ``lateral``, along the third direction).
        lateral: (3,) a direction roughly perpendicular to the segment fixing the ellipse's first
            axis (projected onto the plane normal to the segment).
        flat_start, flat_end: cut the end with a plane instead of rounding it.
    """

    start: np.ndarray
    end: np.ndarray
    radii_start: np.ndarray
    radii_end: np.ndarray
    lateral: np.ndarray
    flat_start: bool = False
    flat_end: bool = False

    @property
    def lipschitz(self) -> float:
        if self.is_round:
            return 1.0
        radii = np.concatenate([self.radii_start, self.radii_end])
        return 1.5 * float(np.max(radii) / np.min(radii))  # 1.5: the cone's taper

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self._bounds

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        axis, e1, e2, _ = self._frame
        lo, hi = [], []
        for point, (ra, rb) in ((self.start, self.radii_start), (self.end, self.radii_end)):
            cap = np.sqrt(ra * rb)
            reach = np.sqrt((ra * e1) ** 2 + (rb * e2) ** 2 + (cap * axis) ** 2)
            lo.append(np.asarray(point, dtype=float) - reach)
            hi.append(np.asarray(point, dtype=float) + reach)
        return np.minimum(*lo), np.maximum(*hi)

    @cached_property
    def _frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        axis = np.asarray(self.end, dtype=float) - np.asarray(self.start, dtype=float)
        length = float(np.linalg.norm(axis))
        axis_unit = axis / max(length, 1e-9)
        lateral = np.asarray(self.lateral, dtype=float)
        lateral = lateral - axis_unit * float(lateral @ axis_unit)
        if np.linalg.norm(lateral) < 1e-6:
            helper = np.array([1.0, 0.0, 0.0]) if abs(axis_unit[0]) < 0.9 else np.eye(3)[1]
            lateral = helper - axis_unit * float(helper @ axis_unit)
        lateral /= np.linalg.norm(lateral)
        a, b = axis_unit, lateral
        third = np.array(
            [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
        )
        return axis_unit, lateral, third, length

    @property
    def is_round(self) -> bool:
        return bool(
            self.radii_start[0] == self.radii_start[1] and self.radii_end[0] == self.radii_end[1]
        )

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        axis, e1, e2, length = self._frame
        px, py, pz = x - _f(self.start[0]), y - _f(self.start[1]), z - _f(self.start[2])
        along = px * _f(axis[0])
        along += py * _f(axis[1])
        along += pz * _f(axis[2])
        t = along * _f(1.0 / max(length, 1e-9))
        np.clip(t, 0.0, 1.0, out=t)
        ra0, rb0 = (float(r) for r in self.radii_start)
        ra1, rb1 = (float(r) for r in self.radii_end)
        if self.is_round:
            # |p - closest|² = |p|² - t·L·(2·along - t·L)
            tl = t * _f(length)
            squared = px * px
            squared += py * py
            squared += pz * pz
            squared -= tl * (2.0 * along - tl)
            np.maximum(squared, 0.0, out=squared)
            out = np.sqrt(squared)
            out -= _f(ra0) + t * _f(ra1 - ra0)
        else:
            axial = along - t * _f(length)
            u = px * _f(e1[0]) + py * _f(e1[1]) + pz * _f(e1[2])
            v = px * _f(e2[0]) + py * _f(e2[1]) + pz * _f(e2[2])
            ra = _f(ra0) + t * _f(ra1 - ra0)
            rb = _f(rb0) + t * _f(rb1 - rb0)
            cap = np.sqrt(ra * rb)
            nu, nv, nw = u / ra, v / rb, axial / cap
            norm = np.sqrt(nu * nu + nv * nv + nw * nw)
            gradient = np.sqrt((nu / ra) ** 2 + (nv / rb) ** 2 + (nw / cap) ** 2)
            out = _first_order_distance(norm, gradient)
        if self.flat_start:
            np.maximum(out, -along, out=out)
        if self.flat_end:
            np.maximum(out, along - _f(length), out=out)
        return out


def catmull_rom(points: np.ndarray, step_mm: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth centre line through ``points`` (n, 3), resampled about every ``step_mm``.

    Uniform Catmull-Rom spline through every control point (end points duplicated). Returns
    the samples (m, 3) and, for each, its fractional control-point index (0 … n-1), handy for
    interpolating per-point values such as radii.
    """
    points = np.asarray(points, dtype=float)
    if len(points) < 3:
        count = max(1, int(np.ceil(np.linalg.norm(points[-1] - points[0]) / step_mm)))
        t = np.linspace(0.0, 1.0, count + 1)
        return points[0] + t[:, None] * (points[-1] - points[0]), t * (len(points) - 1)
    padded = np.vstack([points[:1], points, points[-1:]])
    samples = [points[:1]]
    params = [np.zeros(1)]
    for index in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[index - 1 : index + 3]
        count = max(1, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = (np.arange(1, count + 1) / count)[:, None]
        samples.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (3 * p1 - p0 - 3 * p2 + p3) * t**3
            )
        )
        params.append(index - 1 + t[:, 0])
    return np.vstack(samples), np.concatenate(params)


@dataclass(frozen=True, eq=False)
class Tube(Shape):
    """A tube along a polyline with elliptic cross-sections whose radii vary along it.

    Attributes:
        points: (n, 3) centre line, canonical mm (use :func:`catmull_rom` for smooth curves).
        radii: (n, 2) semi-axes at each point (along ``lateral``, across); (n,) for round tubes.
        lateral: (3,) direction of the first semi-axis (projected per segment).
        flat_start, flat_end: flat instead of rounded tube ends.
    """

    points: np.ndarray
    radii: np.ndarray
    lateral: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    flat_start: bool = False
    flat_end: bool = False

    @classmethod
    def through(
        cls,
        control_points: np.ndarray,
        control_radii: np.ndarray | float,
        *,
        step_mm: float = 8.0,
        lateral: np.ndarray | None = None,
        flat_start: bool = False,
        flat_end: bool = False,
    ) -> Tube:
        """A smooth tube through ``control_points`` (n, 3) with radii given at each of them.

        ``control_radii``: one radius, (n,) round radii or (n, 2) elliptic semi-axes; values
        are interpolated along the spline.
        """
        control_points = np.asarray(control_points, dtype=float)
        points, param = catmull_rom(control_points, step_mm)
        radii = np.asarray(control_radii, dtype=float)
        if radii.ndim == 0:
            radii = np.full(len(control_points), float(radii))
        knots = np.arange(len(control_points))
        if radii.ndim == 1:
            sampled = np.interp(param, knots, radii)
        else:
            sampled = np.stack([np.interp(param, knots, radii[:, c]) for c in range(2)], axis=1)
        return cls(
            points,
            sampled,
            np.array([1.0, 0.0, 0.0]) if lateral is None else np.asarray(lateral, dtype=float),
            flat_start,
            flat_end,
        )

    def _radii2(self) -> np.ndarray:
        radii = np.asarray(self.radii, dtype=float)
        return np.stack([radii, radii], axis=1) if radii.ndim == 1 else radii

    def pieces(self) -> Sequence[Shape]:
        return self._segments

    @cached_property
    def _segments(self) -> tuple[Segment, ...]:
        points = np.asarray(self.points, dtype=float)
        radii = self._radii2()
        count = len(points) - 1
        return tuple(
            Segment(
                points[i],
                points[i + 1],
                radii[i],
                radii[i + 1],
                np.asarray(self.lateral, dtype=float),
                flat_start=self.flat_start and i == 0,
                flat_end=self.flat_end and i == count - 1,
            )
            for i in range(count)
        )

    @property
    def lipschitz(self) -> float:
        return max(piece.lipschitz for piece in self.pieces())

    @property
    def z_lipschitz(self) -> float:
        return max(piece.z_lipschitz for piece in self.pieces())

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return union_bounds(self.pieces())

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = None
        for piece in self.pieces():
            part = piece.distance(x, y, z)
            out = part if out is None else np.minimum(out, part, out=out)
        assert out is not None
        return out

    def length_mm(self) -> float:
        return float(np.sum(np.linalg.norm(np.diff(self.points, axis=0), axis=1)))

    def truncated(self, length_mm: float, *, flat_end: bool = True) -> Tube:
        """The first ``length_mm`` of the tube (measured along the centre line)."""
        points = np.asarray(self.points, dtype=float)
        radii = self._radii2()
        steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
        cumulative = np.concatenate([[0.0], np.cumsum(steps)])
        if length_mm >= cumulative[-1]:
            return Tube(points, radii, self.lateral, self.flat_start, flat_end)
        last = int(np.searchsorted(cumulative, length_mm))
        fraction = (length_mm - cumulative[last - 1]) / max(steps[last - 1], 1e-9)
        end_point = points[last - 1] + fraction * (points[last] - points[last - 1])
        end_radii = radii[last - 1] + fraction * (radii[last] - radii[last - 1])
        return Tube(
            np.vstack([points[:last], end_point]),
            np.vstack([radii[:last], end_radii]),
            self.lateral,
            self.flat_start,
            flat_end,
        )


@dataclass(frozen=True, eq=False)
class Profile(Shape):
    """A body-like solid: superellipse cross-sections (in x, y) whose size varies along z.

    Knots give, at canonical heights ``z``, the half-width ``a`` (x), the anterior and posterior
    half-depths ``b_ant`` and ``b_post`` (y), and the centre ``(cx, cy)``; values between knots
    are linearly interpolated and the solid ends flat at the first and last knot. ``squareness``
    0 gives ellipses, towards 1 rounded rectangles.
    """

    z: np.ndarray
    a: np.ndarray
    b_ant: np.ndarray
    b_post: np.ndarray
    cy: np.ndarray
    cx: np.ndarray | None = None
    squareness: float = 0.3
    step_mm: float = 0.1

    @property
    def lipschitz(self) -> float:
        return 1.3  # first-order in-plane distance; squareness bends it a little

    @property
    def z_lipschitz(self) -> float:
        """The steepest change of the cross-section along z (mm per mm)."""
        cx = np.zeros_like(self.a) if self.cx is None else np.asarray(self.cx)
        steps = np.maximum(np.diff(np.asarray(self.z, dtype=float)), 1e-6)
        slopes = [
            np.abs(np.diff(values)) / steps
            for values in (self.a, self.b_ant, self.b_post, self.cy, cx)
        ]
        return 1.0 + float(np.max(slopes))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        cx = np.zeros_like(self.a) if self.cx is None else np.asarray(self.cx)
        lo = np.array(
            [np.min(cx - self.a), np.min(self.cy - self.b_ant), float(np.min(self.z))], dtype=float
        )
        hi = np.array(
            [np.max(cx + self.a), np.max(self.cy + self.b_post), float(np.max(self.z))], dtype=float
        )
        return lo, hi

    @cached_property
    def _tables(self) -> tuple[float, np.ndarray]:
        """Per 0.1 mm of z: 1/a, 1/b_ant, 1/b_post, cy, cx."""
        z0, z1 = float(self.z[0]), float(self.z[-1])
        grid = np.arange(z0, z1 + self.step_mm, self.step_mm)
        cx = np.zeros_like(self.a) if self.cx is None else np.asarray(self.cx)
        a = np.interp(grid, self.z, np.maximum(self.a, 0.5))
        table = np.stack(
            [
                1.0 / a,
                1.0 / np.interp(grid, self.z, np.maximum(self.b_ant, 0.5)),
                1.0 / np.interp(grid, self.z, np.maximum(self.b_post, 0.5)),
                np.interp(grid, self.z, self.cy),
                np.interp(grid, self.z, cx),
            ]
        ).astype(np.float32)
        return z0, table

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Squared-off ellipse ``u² + v² − c·min(u², 1)·min(v², 1) = 1`` (c = ``squareness``);
        first-order in-plane distance (exact on the surface)."""
        z0, table = self._tables
        last = table.shape[1] - 1
        index = ((z - _f(z0)) * _f(1.0 / self.step_mm) + 0.5).astype(np.int32)
        np.clip(index, 0, last, out=index)
        dy = y - table[3][index]
        inv_b = np.where(dy < 0, table[1][index], table[2][index])
        inv_a = table[0][index]
        u = x - table[4][index] if self.cx is not None else x.copy()
        u *= inv_a
        dy *= inv_b
        gradient = np.sqrt((u * inv_a) ** 2 + (dy * inv_b) ** 2)
        u *= u
        dy *= dy
        norm = u + dy
        if self.squareness > 0:
            np.minimum(u, 1.0, out=u)
            u *= np.minimum(dy, 1.0)
            u *= _f(self.squareness)
            norm -= u
        np.sqrt(norm, out=norm)
        norm = _first_order_distance(norm, gradient)
        np.maximum(norm, z - _f(self.z[-1]), out=norm)
        np.maximum(norm, _f(self.z[0]) - z, out=norm)
        return norm


@dataclass(frozen=True, eq=False)
class Box(Shape):
    """A box with rounded edges (exact distance).

    Attributes:
        center: (3,) canonical mm.
        half_sizes: (3,) half edge lengths in mm along the local axes (rounding included).
        axes: 3×3, columns are the local axes in the canonical frame.
        rounding: edge radius in mm.
    """

    center: np.ndarray
    half_sizes: np.ndarray
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))
    rounding: float = 0.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.abs(np.asarray(self.axes)) @ np.asarray(self.half_sizes, dtype=float)
        center = np.asarray(self.center, dtype=float)
        return center - half, center + half

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        dx, dy, dz = x - _f(self.center[0]), y - _f(self.center[1]), z - _f(self.center[2])
        axes = np.asarray(self.axes, dtype=float)
        inner = np.asarray(self.half_sizes, dtype=float) - self.rounding
        excess = [
            np.abs(dx * _f(axes[0, c]) + dy * _f(axes[1, c]) + dz * _f(axes[2, c])) - _f(inner[c])
            for c in range(3)
        ]
        outside = np.sqrt(sum(np.maximum(e, 0.0) ** 2 for e in excess))
        inside = np.minimum(np.maximum(np.maximum(excess[0], excess[1]), excess[2]), 0.0)
        return (outside + inside - _f(self.rounding)).astype(np.float32, copy=False)


@dataclass(frozen=True, eq=False)
class HalfSpace(Shape):
    """Points with ``normal · p <= offset`` (normal is normalised on use). Unbounded."""

    normal: np.ndarray
    offset: float

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(3, -_UNBOUNDED), np.full(3, _UNBOUNDED)

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        n = np.asarray(self.normal, dtype=float)
        n = n / np.linalg.norm(n)
        return (x * _f(n[0]) + y * _f(n[1]) + z * _f(n[2]) - _f(self.offset)).astype(
            np.float32, copy=False
        )


@dataclass(frozen=True, eq=False)
class Shell(Shape):
    """A layer of ``thickness`` mm just inside the surface of ``inner`` (offset mm inward)."""

    inner: Shape
    thickness: float
    offset: float = 0.0

    @property
    def lipschitz(self) -> float:
        return self.inner.lipschitz

    @property
    def z_lipschitz(self) -> float:
        return self.inner.z_lipschitz

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.bounds()

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        half = 0.5 * self.thickness
        sd = self.inner.distance(x, y, z) + _f(self.offset + half)
        return np.abs(sd) - _f(half)


@dataclass(frozen=True, eq=False)
class Intersection(Shape):
    """Points inside every part."""

    parts: tuple[Shape, ...]

    def pieces(self) -> Sequence[Shape]:
        """Distributes over the pieces of the first part when the others are single pieces."""
        first = self.parts[0].pieces()
        if len(first) == 1 or any(len(part.pieces()) != 1 for part in self.parts[1:]):
            return (self,)
        return tuple(Intersection((piece, *self.parts[1:])) for piece in first)

    @property
    def lipschitz(self) -> float:
        return max(part.lipschitz for part in self.parts)

    @property
    def z_lipschitz(self) -> float:
        return max(part.z_lipschitz for part in self.parts)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [part.bounds() for part in self.parts]
        return np.max([b[0] for b in boxes], axis=0), np.min([b[1] for b in boxes], axis=0)

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = self.parts[0].distance(x, y, z)
        for part in self.parts[1:]:
            np.maximum(out, part.distance(x, y, z), out=out)
        return out


@dataclass(frozen=True, eq=False)
class Union(Shape):
    """Points inside any part; the rasteriser evaluates each part in its own box."""

    parts: tuple[Shape, ...]

    def pieces(self) -> Sequence[Shape]:
        return tuple(piece for part in self.parts for piece in part.pieces())

    @property
    def lipschitz(self) -> float:
        return max(part.lipschitz for part in self.parts)

    @property
    def z_lipschitz(self) -> float:
        return max(part.z_lipschitz for part in self.parts)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return union_bounds(self.parts)

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = self.parts[0].distance(x, y, z)
        for part in self.parts[1:]:
            np.minimum(out, part.distance(x, y, z), out=out)
        return out


@dataclass(frozen=True, eq=False)
class Difference(Shape):
    """Points inside ``keep`` and outside ``remove``."""

    keep: Shape
    remove: Shape

    def pieces(self) -> Sequence[Shape]:
        kept = self.keep.pieces()
        if len(kept) == 1:
            return (self,)
        return tuple(Difference(piece, self.remove) for piece in kept)

    @property
    def lipschitz(self) -> float:
        return max(self.keep.lipschitz, self.remove.lipschitz)

    @property
    def z_lipschitz(self) -> float:
        return max(self.keep.z_lipschitz, self.remove.z_lipschitz)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.keep.bounds()

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = self.keep.distance(x, y, z)
        np.maximum(out, -self.remove.distance(x, y, z), out=out)
        return out


@dataclass(frozen=True, eq=False)
class Clipped(Shape):
    """``shape`` cut to the axis-aligned box [lo, hi] (canonical mm): tight bounds for shapes
    whose own bounds are far too large (a thin shell cut from a big ellipsoid)."""

    shape: Shape
    lo: np.ndarray
    hi: np.ndarray

    @property
    def lipschitz(self) -> float:
        return self.shape.lipschitz

    @property
    def z_lipschitz(self) -> float:
        return self.shape.z_lipschitz

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        own_lo, own_hi = self.shape.bounds()
        return np.maximum(own_lo, self.lo), np.minimum(own_hi, self.hi)

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = self.shape.distance(x, y, z)
        for values, low, high in zip((x, y, z), self.lo, self.hi):
            np.maximum(out, _f(low) - values, out=out)
            np.maximum(out, values - _f(high), out=out)
        return out


def union_bounds(shapes: Sequence[Shape]) -> tuple[np.ndarray, np.ndarray]:
    """The box holding every shape's box."""
    boxes = [shape.bounds() for shape in shapes]
    return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

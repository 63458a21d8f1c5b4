"""Non-negative least squares (Lawson & Hanson 1974) in plain Python, for the estimator's fits.

The serving model and the calibration fit a handful of non-negative constants (overheads in
seconds, efficiencies, joules per byte) to tens or hundreds of measured points; a closed,
deterministic solver keeps those fits reproducible without numpy. Columns are scaled to unit
norm before solving and the solution is scaled back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _solve(m: list[list[float]], v: list[float]) -> list[float] | None:
    """Solve the square system ``m x = v`` by Gaussian elimination with partial pivoting."""
    n = len(v)
    a = [[*row, v[i]] for i, row in enumerate(m)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[piv][col]) < 1e-14:
            return None
        a[col], a[piv] = a[piv], a[col]
        for r in range(col + 1, n):
            f = a[r][col] / a[col][col]
            if f:
                for c in range(col, n + 1):
                    a[r][c] -= f * a[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (a[r][n] - sum(a[r][c] * x[c] for c in range(r + 1, n))) / a[r][r]
    return x


def _lstsq(cols: list[list[float]], b: Sequence[float], idx: list[int]) -> list[float] | None:
    """Least squares on the columns ``idx`` (normal equations; columns are unit-norm)."""
    gram = [[sum(p * q for p, q in zip(cols[i], cols[j])) for j in idx] for i in idx]
    rhs = [sum(p * q for p, q in zip(cols[i], b)) for i in idx]
    return _solve(gram, rhs)


def nnls(rows: Sequence[Sequence[float]], b: Sequence[float], *, max_iter: int = 200) -> list[float]:
    """``argmin ||A x - b||`` subject to ``x >= 0``; ``rows`` are the rows of ``A``."""
    if not rows:
        raise ValueError("nnls needs at least one row")
    n = len(rows[0])
    raw = [[float(r[j]) for r in rows] for j in range(n)]
    norms = [math.sqrt(sum(v * v for v in c)) or 1.0 for c in raw]
    cols = [[v / norms[j] for v in c] for j, c in enumerate(raw)]
    x = [0.0] * n
    passive: list[int] = []

    def gradient(xs: list[float]) -> list[float]:
        resid = [bi - sum(cols[j][i] * xs[j] for j in range(n)) for i, bi in enumerate(b)]
        return [sum(c * r for c, r in zip(cols[j], resid)) for j in range(n)]

    tol = 1e-12 * max(1.0, math.sqrt(sum(v * v for v in b)))
    for _ in range(max_iter):
        w = gradient(x)
        candidates = [j for j in range(n) if j not in passive and w[j] > tol]
        if not candidates:
            break
        passive.append(max(candidates, key=lambda j: w[j]))
        while True:
            sol = _lstsq(cols, b, passive)
            if sol is None:  # degenerate column: drop the newest and stop growing the set
                passive.pop()
                return [x[j] / norms[j] for j in range(n)]
            s = [0.0] * n
            for k, j in enumerate(passive):
                s[j] = sol[k]
            if all(s[j] > 0 for j in passive):
                x = s
                break
            alpha = min(x[j] / (x[j] - s[j]) for j in passive if s[j] <= 0)
            x = [x[j] + alpha * (s[j] - x[j]) for j in range(n)]
            passive = [j for j in passive if x[j] > 1e-15]
            if not passive:
                break
    return [x[j] / norms[j] for j in range(n)]

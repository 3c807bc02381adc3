"""How far the compiled engine's ln states may sit from a reference solution of the same problem.

The engine controls its local error at 1e-5 ln per step (``engine/integrator.py``), so its global error grows with
the distance a state travels: the tolerance is 1e-3 ln (0.1% of a count) plus 1e-4 of the state's change from the
start of the window to its end. Shared by the reference-solver (SciPy) and SBML (libRoadRunner) comparisons."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

LN_TOLERANCE = 1.0e-3  # absolute, ln cells
LN_TOLERANCE_PER_CHANGE = 1.0e-4  # added per ln unit the state moved over the window


def ln_tolerance(reference: NDArray[np.float64], start: NDArray[np.float64]) -> NDArray[np.float64]:
    """Allowed |engine - reference| (ln units), elementwise, for ln states that moved from ``start`` to
    ``reference`` over the window."""
    return LN_TOLERANCE + LN_TOLERANCE_PER_CHANGE * np.abs(reference - start)

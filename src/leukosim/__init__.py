"""leukosim: in-silico trial simulator for immunotherapy of pediatric B-cell precursor ALL.

Research use only. Not a medical device; never advice for an individual patient.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .model.registry import ParameterSet, default_parameters  # noqa: E402
from .protocol.load import ProtocolError, bundled_protocols, load_protocol  # noqa: E402
from .protocol.schema import Protocol  # noqa: E402
from .trial import TrialResult, simulate_trial  # noqa: E402

__all__ = [
    "__version__",
    "ParameterSet",
    "Protocol",
    "ProtocolError",
    "TrialResult",
    "bundled_protocols",
    "default_parameters",
    "load_protocol",
    "simulate_trial",
]

"""In-run forecast of a run's total energy from its first steps (see :mod:`greenlm.tracking.forecast`).

The computation lives beside the tracker, which forecasts while it runs; it is re-exported
here for the estimator's API.
"""

from __future__ import annotations

from greenlm.tracking.forecast import Forecast, StepForecaster, forecast_total

__all__ = ["Forecast", "StepForecaster", "forecast_total"]

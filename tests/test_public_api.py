"""The public API is deliberate: pinned here; a change needs a CHANGELOG entry."""

from __future__ import annotations

import subprocess
import sys

import greenlm

EXPECTED = {
    "CarbonConfig",
    "ComponentEnergy",
    "ConfigError",
    "EnergyTracker",
    "GreenlmError",
    "GridIntensity",
    "LocationNotFoundError",
    "MeterUnavailableError",
    "MissingExtraError",
    "PhaseEnergy",
    "ResultNotReadyError",
    "RunNotFoundError",
    "RunResult",
    "StoreError",
    "TrackerConfig",
    "__version__",
    "resolve_location",
    "track_energy",
    "monitor",
}


def test_public_names_are_pinned():
    assert set(greenlm.__all__) == EXPECTED
    for name in greenlm.__all__:
        assert getattr(greenlm, name) is not None


def test_import_is_light_and_offline():
    code = (
        "import sys, socket\n"
        "def no_net(*a, **k): raise AssertionError('network call at import')\n"
        "socket.socket.connect = no_net\n"
        "import greenlm\n"
        "mods = ('torch', 'sqlalchemy', 'transformers', 'pynvml', 'numpy', 'fastapi')\n"
        "heavy = [m for m in mods if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_errors_share_one_root():
    for name in (
        "ConfigError",
        "LocationNotFoundError",
        "MeterUnavailableError",
        "StoreError",
        "RunNotFoundError",
        "ResultNotReadyError",
        "MissingExtraError",
    ):
        assert issubclass(getattr(greenlm, name), greenlm.GreenlmError)

"""Store URLs are shown with their password masked (and parse with the standard library only)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from greenlm.store import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://greenlm:SuperSecretPW@db.example:5432/runs",
            "postgresql+psycopg://greenlm:***@db.example:5432/runs",
        ),
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pa@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?password=hunter2&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("postgresql://onlyuser@h/db", "postgresql://onlyuser@h/db"),
        ("sqlite:////home/me/.greenlm/runs.db", "sqlite:////home/me/.greenlm/runs.db"),
        ("not a url at all", "not a url at all"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "Secret" not in redact_url(url) and "hunter2" not in redact_url(url)


def test_redact_url_needs_no_sqlalchemy() -> None:
    code = "import sys; from greenlm.store import redact_url, StoredRun; print('sqlalchemy' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )

"""A missing extra is an ImportError that names the pip install to run."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from greenlm.errors import MissingExtraError


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("greenlm.integrations.hf", "transformers", "hf"),
        ("greenlm.integrations.lightning", "pytorch_lightning", "lightning"),
    ],
)
def test_import_of_adapter_names_the_extra(monkeypatch, module, blocked, extra) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=rf"pip install 'greenlm\[{extra}\]'") as e:
        importlib.import_module(module)
    assert isinstance(e.value, MissingExtraError)
    monkeypatch.delitem(sys.modules, module, raising=False)


def test_tensorboard_listener_without_tensorboard(monkeypatch, tmp_path) -> None:
    from greenlm.integrations.tensorboard import TensorBoardListener

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingExtraError, match=r"greenlm\[tensorboard\]"):
        TensorBoardListener(str(tmp_path))


def test_the_old_tensorboard_dir_setting_says_what_replaced_it(tmp_path) -> None:
    from greenlm.errors import ConfigError
    from greenlm.tracking.tracker import EnergyTracker

    with pytest.raises(ConfigError, match="TensorBoardListener"):
        EnergyTracker(tensorboard_dir=str(tmp_path), store=False)


def test_mlflow_listener_without_mlflow(monkeypatch) -> None:
    from greenlm.integrations.mlflow import MlflowListener

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingExtraError, match=r"greenlm\[mlflow\]"):
        MlflowListener()


def test_monitor_without_prometheus_client(monkeypatch) -> None:
    from greenlm.integrations.monitor import Monitor

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtraError, match=r"greenlm\[monitor\]"):
        Monitor(store=False)


def test_importing_the_package_pulls_in_no_framework() -> None:
    code = (
        "import sys, greenlm.integrations, greenlm.integrations.monitor, "
        "greenlm.integrations.mlflow, greenlm.integrations.distributed, greenlm.integrations.slurm, "
        "greenlm.integrations.cli\n"
        "heavy = {'torch', 'transformers', 'pytorch_lightning', 'mlflow', 'prometheus_client', "
        "'starlette', 'fastapi'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""One resolved configuration: arguments > environment > config file, types coerced, never dropped."""

from __future__ import annotations

import dataclasses
import time
import typing

import pytest

from greenlm import EnergyTracker, TrackerConfig
from greenlm.config import ENV_VARS, TrackerSettings, setting_names
from greenlm.errors import ConfigError
from greenlm.meters import ReplayMeter


def _gpu():
    return ReplayMeter("gpu:0", "gpu", power_w=100.0, provenance="counter")


def test_config_plus_overrides_merges_the_overrides():
    t = EnergyTracker(config=TrackerConfig(), interval_s=0.5, location="DEU", store=False)
    assert t.config.interval_s == 0.5
    assert t.carbon.location.code == "DEU"


def test_overrides_keep_the_rest_of_the_config():
    base = TrackerConfig(project="p", pue=1.2, interval_s=2.0, metadata={"a": 1})
    t = EnergyTracker(config=base, interval_s=0.5, metadata={"b": 2}, store=False)
    assert (t.config.project, t.config.pue, t.config.interval_s) == ("p", 1.2, 0.5)
    assert t.config.metadata == {"a": 1, "b": 2}


def test_a_config_given_with_an_unknown_override_is_an_error_not_a_silent_drop():
    with pytest.raises(ConfigError, match=r"interval_ms.*did you mean 'interval_s'"):
        EnergyTracker(config=TrackerConfig(), interval_ms=5, store=False)


def test_the_override_really_sets_the_sampling_interval():
    t = EnergyTracker(config=TrackerConfig(interval_s=1.0), interval_s=0.02, meters=[_gpu()], store=False)
    with t:
        time.sleep(0.3)
    # at 0.02 s the window has many timeline points; at 1 s it would have none in 0.3 s
    assert len(t.result.timeline) >= 8


@pytest.mark.parametrize(("text", "value"), [("5e-1", 0.5), ("0.5", 0.5), ("1", 1.0), ("2.5e+0", 2.5)])
def test_a_yaml_number_yaml_reads_as_a_string_is_a_float(tmp_path, monkeypatch, text, value):
    (tmp_path / "config.yaml").write_text(f"interval_s: {text}\nflush_interval_s: {text}\n")
    monkeypatch.setenv("GREENLM_CONFIG", str(tmp_path / "config.yaml"))
    c = TrackerConfig.resolve()
    assert c.interval_s == value and isinstance(c.interval_s, float)


def test_string_values_from_the_api_and_environment_are_coerced(monkeypatch):
    monkeypatch.setenv("GREENLM_GPUS", "false")
    monkeypatch.setenv("GREENLM_PUE", "1.25")
    c = TrackerConfig.resolve(interval_s="0.5")
    assert (c.gpus, c.pue, c.interval_s) == (False, 1.25, 0.5)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ({"file": "interval_s: fast\n"}, r"interval_s must be a number, got 'fast'.*config file"),
        ({"file": "pue_setting: 7\n"}, r"pue_setting must be one of"),
        ({"file": "flush_interval_s: 1e-9\n"}, r"flush_interval_s must be >= 0.01"),
        ({"file": "gpus: maybe\n"}, r"gpus must be true or false"),
        ({"env": ("GREENLM_INTERVAL_S", "soon")}, r"interval_s must be a number.*GREENLM_INTERVAL_S"),
        ({"env": ("GREENLM_PUE", "1e308")}, r"pue must be >= 1 and <= 5"),
        ({"arg": {"price_per_kwh": 1e308}}, r"price_per_kwh must be >= 0 and <= 100000"),
        ({"arg": {"cpu_tdp_w": 1e30}}, r"cpu_tdp_w must be"),
        ({"arg": {"currency": "TOOLONGCURRENCYCODE"}}, r"3-letter ISO 4217"),
        ({"arg": {"project": "x" * 5000}}, r"project is 5000 characters long; at most 256"),
        ({"arg": {"interval_s": True}}, r"interval_s must be a number"),
    ],
)
def test_bad_values_name_the_setting_and_where_it_came_from(tmp_path, monkeypatch, source, match):
    if "file" in source:
        (tmp_path / "config.yaml").write_text(source["file"])
        monkeypatch.setenv("GREENLM_CONFIG", str(tmp_path / "config.yaml"))
    if "env" in source:
        monkeypatch.setenv(*source["env"])
    with pytest.raises(ConfigError, match=match):
        TrackerConfig.resolve(**source.get("arg", {}))
    with pytest.raises(ConfigError, match=match):  # the tracker raises the same, at construction
        EnergyTracker(store=False, **source.get("arg", {}))


def test_interval_given_as_a_string_to_the_tracker_is_not_a_traceback_at_exit():
    t = EnergyTracker(interval_s="0.05", meters=[_gpu()], store=False)
    with t:
        time.sleep(0.12)
    assert t.result.status == "completed" and t.config.interval_s == 0.05


def test_yaml_aliases_are_refused_without_expanding_them(tmp_path, monkeypatch):
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b]\n'
    (tmp_path / "config.yaml").write_text(bomb)
    monkeypatch.setenv("GREENLM_CONFIG", str(tmp_path / "config.yaml"))
    with pytest.raises(ConfigError, match="aliases") as e:
        TrackerConfig.resolve()
    assert '"x"' not in str(e.value)  # the message quotes none of the input


def test_server_and_token_resolve_in_the_config(monkeypatch):
    monkeypatch.setenv("GREENLM_SERVER", "http://team:8787")
    monkeypatch.setenv("GREENLM_TOKEN", "s3cret")
    c = TrackerConfig.resolve()
    assert (c.server, c.token) == ("http://team:8787", "s3cret")
    assert "s3cret" not in repr(c) and c.to_dict()["token"] == "***"
    assert TrackerConfig.resolve(server="http://other:1").server == "http://other:1"


def test_every_setting_has_an_environment_variable_and_a_keyword():
    names = set(setting_names())
    assert set(ENV_VARS.values()) == names - {"metadata"}
    assert set(typing.get_type_hints(TrackerSettings)) == names - {"project", "store", "metadata"}
    assert {f.name for f in dataclasses.fields(TrackerConfig)} == names

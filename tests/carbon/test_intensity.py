import math

import pytest

from greenlm.carbon import CarbonConfig, account, known_locations, resolve_location, resolve_pue
from greenlm.carbon.price import resolve_price
from greenlm.errors import ConfigError, LocationNotFoundError


@pytest.mark.parametrize("code", ["DE", "de", "DEU", "deu"])
def test_country_alpha2_and_alpha3_resolve_to_the_same_row(code):
    g = resolve_location(code)
    assert g.code == "DEU"
    assert g.name == "Germany"
    assert "Ember" in g.source and g.year and g.license
    assert not g.defaulted


@pytest.mark.parametrize(
    ("code", "region_type"),
    [
        ("US-CA", "us_state"),
        ("EGRID-CAMX", "egrid_subregion"),
        ("CA-QC", "ca_province"),
        ("AU-NSW", "au_state"),
        ("aws:us-east-1", "cloud_region"),
        ("gcp:europe-west4", "cloud_region"),
        ("azure:westeurope", "cloud_region"),
        ("WORLD", "aggregate"),
    ],
)
def test_subnational_and_cloud_regions(code, region_type):
    g = resolve_location(code)
    assert g.region_type == region_type
    assert 0 <= g.intensity_g_per_kwh < 2000
    assert g.source


def test_cloud_region_names_provider_and_is_case_insensitive():
    g = resolve_location("AWS:US-EAST-1")
    assert g.cloud_provider == "aws" and g.code == "aws:us-east-1"


def test_no_location_is_world_average_and_flagged():
    g = resolve_location(None)
    assert g.defaulted and g.code == "WORLD"
    cfg = CarbonConfig.build()
    assert any("world average" in w for w in cfg.warnings())
    assert not CarbonConfig.build(location="FRA").warnings()


def test_unknown_location_suggests_close_matches():
    with pytest.raises(LocationNotFoundError) as e:
        resolve_location("aws:us-est-1")
    assert "aws:us-east-1" in e.value.suggestions
    assert "aws:us-east-1" in str(e.value)
    with pytest.raises(LocationNotFoundError) as e2:
        resolve_location("Germany")
    assert "DEU" in e2.value.suggestions


def test_hydro_grid_is_cleaner_than_coal_grid():
    # A user comparing regions must see the physical ordering the data encodes.
    assert resolve_location("CA-QC").intensity_g_per_kwh < resolve_location("POL").intensity_g_per_kwh


def test_known_locations_are_unique_and_cover_every_table():
    locs = known_locations()
    codes = [g.code for g in locs]
    assert len(codes) == len(set(codes))
    types = {g.region_type for g in locs}
    assert {"country", "us_state", "egrid_subregion", "cloud_region", "ca_province", "au_state"} <= types


def test_pue_defaults_by_setting_and_cloud_provider():
    assert resolve_pue(None, "local").value == 1.0
    aws = resolve_pue(None, "auto", cloud_provider="aws")
    assert 1.0 < aws.value < 1.3 and "Amazon" in aws.source and aws.defaulted
    onprem = resolve_pue(None, "on-premise")
    assert onprem.value > aws.value and "Uptime" in onprem.source
    assert resolve_pue(1.3).value == 1.3 and not resolve_pue(1.3).defaulted


@pytest.mark.parametrize("bad", [-1.0, 0.5, math.nan, math.inf, "abc"])
def test_bad_pue_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="PUE"):
        resolve_pue(bad)


@pytest.mark.parametrize("bad", [-0.1, math.nan])
def test_bad_price_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="price"):
        resolve_price(bad)


def test_accounting_chain_pue_intensity_price():
    cfg = CarbonConfig.build(location="FRA", pue=1.5, price_per_kwh=0.2, currency="eur")
    fp = account(3.6e6, cfg)  # 1 kWh of IT energy
    assert fp.facility_energy_j == pytest.approx(5.4e6)
    assert fp.energy_kwh == pytest.approx(1.5)
    assert fp.co2e_g == pytest.approx(1.5 * cfg.location.intensity_g_per_kwh)
    assert fp.cost == pytest.approx(0.3) and fp.currency == "EUR"


def test_user_intensity_overrides_table():
    cfg = CarbonConfig.build(intensity_g_per_kwh=100.0)
    assert cfg.location.intensity_g_per_kwh == 100.0 and cfg.location.source == "user value"
    assert not cfg.location.defaulted

"""GeoIP/ASN enrichment against small MaxMind databases built by the test (mmdb-writer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from receiver.config import ConfigError, ParseSettings
from receiver.parse import Parser
from tests.parse.helpers import epoch

LINE = (
    "<134>Nov 25 18:21:38 haproxy[1]: {client}:49360 [25/Nov/2026:18:21:38.683] fe be/s1"
    ' 0/0/0/0/0 200 161 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"'
)


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("geo")
    city = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City",
                      languages=["en"], description="test city db")
    city.insert_network(IPSet(["81.2.69.0/24"]), {
        "city": {"names": {"en": "London"}},
        "continent": {"code": "EU", "names": {"en": "Europe"}},
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "location": {"latitude": 51.5142, "longitude": -0.0931},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
        "postal": {"code": "EC2V"},
    })
    city.insert_network(IPSet(["2001:db8::/32"]), {
        "country": {"iso_code": "DE", "names": {"en": "Germany"}},
        "location": {"latitude": 52.5, "longitude": 13.4},
    })
    city_path = str(folder / "city.mmdb")
    city.to_db_file(city_path)
    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN",
                     languages=["en"], description="test asn db")
    asn.insert_network(IPSet(["81.2.69.0/24"]), {
        "autonomous_system_number": 20712,
        "autonomous_system_organization": "Andrews & Arnold Ltd",
    })
    asn_path = str(folder / "asn.mmdb")
    asn.to_db_file(asn_path)
    return city_path, asn_path


def test_city_and_asn_fields(databases: tuple[str, str]) -> None:
    city, asn = databases
    parser = Parser(ParseSettings(geoip_database=city, asn_database=asn))
    doc = parser.parse(LINE.format(client="81.2.69.160").encode(), epoch("2026-11-25T18:30:00"))
    assert doc["source.geo.location"] == {"lat": 51.5142, "lon": -0.0931}
    assert doc["source.geo.country_iso_code"] == "GB"
    assert doc["source.geo.country_name"] == "United Kingdom"
    assert doc["source.geo.city_name"] == "London"
    assert doc["source.geo.continent_code"] == "EU"
    assert doc["source.geo.region_iso_code"] == "GB-ENG"
    assert doc["source.geo.region_name"] == "England"
    assert doc["source.as.number"] == 20712
    assert doc["source.as.organization.name"] == "Andrews & Arnold Ltd"
    ipv6 = parser.parse(LINE.format(client="2001:db8::7").encode(), epoch("2026-11-25T18:30:00"))
    assert ipv6["source.geo.country_iso_code"] == "DE"
    assert "source.as.number" not in ipv6


def test_unknown_private_and_missing_addresses_get_nothing(databases: tuple[str, str]) -> None:
    city, asn = databases
    parser = Parser(ParseSettings(geoip_database=city, asn_database=asn))
    for client in ("127.0.0.1", "10.1.2.3", "unix"):
        doc = parser.parse(LINE.format(client=client).encode(), epoch("2026-11-25T18:30:00"))
        assert not any(key.startswith(("source.geo", "source.as")) for key in doc)


def test_missing_database_is_refused_with_the_setting_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"parse\.geoip_database"):
        Parser(ParseSettings(geoip_database=str(tmp_path / "absent.mmdb")))
    (tmp_path / "bad.mmdb").write_bytes(b"not a database")
    with pytest.raises(ConfigError, match=r"parse\.asn_database"):
        Parser(ParseSettings(asn_database=str(tmp_path / "bad.mmdb")))

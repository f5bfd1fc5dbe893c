"""GeoIP and ASN enrichment of `source.ip` from MaxMind-format database files (optional).

Owns reading `parse.geoip_database` (GeoLite2/GeoIP2 City or Country, or any MMDB with the
same layout) and `parse.asn_database` (GeoLite2 ASN) with `maxminddb` (the `geoip` extra), and
adding the Elastic Common Schema geo fields: `source.geo.location` as a geo point
`{"lat": .., "lon": ..}`, `source.geo.country_iso_code`, `source.geo.country_name`,
`source.geo.continent_code`, `source.geo.continent_name`, `source.geo.region_iso_code`,
`source.geo.region_name`, `source.geo.city_name`, `source.geo.postal_code`,
`source.as.number`, `source.as.organization.name`. Private and unknown addresses get nothing.
Results are cached per address (clients repeat); the cache is bounded.
"""

from __future__ import annotations

from typing import Any

from receiver.config import ConfigError
from receiver.parse.fields import SOURCE_IP

_CACHE_LIMIT = 65536
_COUNTRY_CODE = "source.geo.country_iso_code"


def _name(record: Any) -> str | None:
    if isinstance(record, dict):
        names = record.get("names")
        if isinstance(names, dict):
            name = names.get("en") or next(iter(names.values()), None)
            return name if isinstance(name, str) else None
    return None


def open_database(path: str, setting: str) -> Any:
    """The MaxMind database `parse.<setting>` names, or ConfigError naming both."""
    try:
        import maxminddb
    except ImportError as problem:
        raise ConfigError(
            f"parse.{setting}: GeoIP needs the `maxminddb` package "
            "(pip install 'haproxy-receiver[geoip]')"
        ) from problem
    try:
        return maxminddb.open_database(path)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as problem:
        raise ConfigError(
            f"parse.{setting}: cannot open MaxMind database {path!r}: {problem}"
        ) from problem


class GeoEnricher:
    """Adds `source.geo.*` and `source.as.*` for documents with a `source.ip`."""

    def __init__(self, city_database: str, asn_database: str) -> None:
        self.city = open_database(city_database, "geoip_database") if city_database else None
        self.asn = open_database(asn_database, "asn_database") if asn_database else None
        self._cache: dict[str, dict[str, Any]] = {}

    def enrich(self, doc: dict[str, Any]) -> None:
        ip = doc.get(SOURCE_IP)
        if ip is None:
            return
        fields = self._cache.get(ip)
        if fields is None:
            fields = self.lookup(ip)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[ip] = fields
        if fields:
            doc.update(fields)

    def lookup(self, ip: str) -> dict[str, Any]:
        """The geo fields for one address (empty when the databases know nothing)."""
        fields: dict[str, Any] = {}
        if self.city is not None:
            try:
                record = self.city.get(ip)
            except ValueError:
                record = None
            if isinstance(record, dict):
                self._city_fields(record, fields)
        if self.asn is not None:
            try:
                record = self.asn.get(ip)
            except ValueError:
                record = None
            if isinstance(record, dict):
                number = record.get("autonomous_system_number")
                if isinstance(number, int):
                    fields["source.as.number"] = number
                organization = record.get("autonomous_system_organization")
                if isinstance(organization, str):
                    fields["source.as.organization.name"] = organization
        return fields

    @staticmethod
    def _city_fields(record: dict[str, Any], fields: dict[str, Any]) -> None:
        location = record.get("location")
        if isinstance(location, dict):
            lat, lon = location.get("latitude"), location.get("longitude")
            if isinstance(lat, int | float) and isinstance(lon, int | float):
                fields["source.geo.location"] = {"lat": float(lat), "lon": float(lon)}
        country = record.get("country")
        if isinstance(country, dict):
            if isinstance(country.get("iso_code"), str):
                fields[_COUNTRY_CODE] = country["iso_code"]
            name = _name(country)
            if name:
                fields["source.geo.country_name"] = name
        continent = record.get("continent")
        if isinstance(continent, dict):
            if isinstance(continent.get("code"), str):
                fields["source.geo.continent_code"] = continent["code"]
            name = _name(continent)
            if name:
                fields["source.geo.continent_name"] = name
        subdivisions = record.get("subdivisions")
        if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], dict):
            region = subdivisions[0]
            if isinstance(region.get("iso_code"), str) and _COUNTRY_CODE in fields:
                fields["source.geo.region_iso_code"] = (
                    f"{fields[_COUNTRY_CODE]}-{region['iso_code']}"
                )
            name = _name(region)
            if name:
                fields["source.geo.region_name"] = name
        name = _name(record.get("city"))
        if name:
            fields["source.geo.city_name"] = name
        postal = record.get("postal")
        if isinstance(postal, dict) and isinstance(postal.get("code"), str):
            fields["source.geo.postal_code"] = postal["code"]

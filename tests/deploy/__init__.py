"""Tests of the packaging and views: Helm chart, image, systemd unit, dashboards, alerts."""

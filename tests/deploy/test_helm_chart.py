"""The Helm chart renders in every mode through the Helm SDK, lints clean, every manifest
validates against the Kubernetes schemas, and the rendered TOML is a configuration the receiver
accepts. The PrometheusRule and the Grafana dashboard ConfigMap carry the repository's one copy
of the alert rules and the dashboard (promtool checks the rendered rules)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.config import load_settings
from tests.support import REPO

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) bundles Helm")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

CHART = REPO / "charts" / "haproxy-receiver"
ALERTS = REPO / "dashboards" / "prometheus" / "alerts.yml"
GRAFANA = REPO / "dashboards" / "grafana" / "haproxy-receiver.json"
KUBE_VERSION = "1.30.0"
RELEASE = "rcv"

TLS_VALUES: dict[str, Any] = {"tls": {"enabled": True, "secretName": "rcv-tls", "clientCASecret": "rcv-ca"}}
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "statefulset": {
        "mode": "statefulset", "replicaCount": 3,
        "elasticsearch": {"hosts": ["https://es:9200"], "username": "shipper",
                          "existingSecret": "es-creds", "passwordKey": "password",
                          "caSecret": "es-ca"},
        "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                    "loadBalancerSourceRanges": ["10.0.0.0/16"]},
    },
    "daemonset": {"mode": "daemonset"},
    "tls": TLS_VALUES,
    "tls-only-daemonset": {"mode": "daemonset", "tls": {**TLS_VALUES["tls"], "plainTcp": False}},
    "servicemonitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "no-persistence": {"persistence": {"enabled": False}},
    "extras": {
        "envFrom": [{"secretRef": {"name": "receiver-env"}}],
        "extraVolumes": [{"name": "es-password", "secret": {"secretName": "es-shipper"}}],
        "extraVolumeMounts": [{"name": "es-password", "mountPath": "/etc/haproxy-receiver/es-password",
                               "readOnly": True}],
        "podAnnotations": {"example.com/team": "edge"},
        "config": {"elasticsearch": {"username": "shipper",
                                     "password_file": "/etc/haproxy-receiver/es-password/password"}},
    },
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Logging"}},
    },
    "networkpolicy": {
        "tls": TLS_VALUES["tls"],
        "networkPolicy": {
            "enabled": True,
            "syslogFrom": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "monitoring"}}}],
            "egress": {"enabled": True, "rules": [{"to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}],
                                                   "ports": [{"port": 9200, "protocol": "TCP"}]}]},
        },
    },
    "kafka-workers": {
        "elasticsearch": {"hosts": ["https://es:9200"], "username": "shipper",
                          "existingSecret": "es-creds", "passwordKey": "password"},
        "config": {"kafka": {"bootstrap_servers": ["kafka-0.kafka:9092", "kafka-1.kafka:9092"],
                             "topic": "haproxy"}},
        "workers": {"enabled": True, "replicas": 3},
    },
    "kafka-workers-monitoring": {
        "config": {"kafka": {"bootstrap_servers": ["kafka-0.kafka:9092"]}},
        "workers": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True},
    },
    "kafka-workers-networkpolicy": {
        "config": {"kafka": {"bootstrap_servers": ["kafka-0.kafka:9092"]}},
        "workers": {"enabled": True},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "monitoring"}}}],
            "egress": {"enabled": True, "rules": [{"to": [{"ipBlock": {"cidr": "10.40.0.0/16"}}],
                                                   "ports": [{"port": 9092, "protocol": "TCP"}]}]},
        },
    },
    "geoip-claim": {"geoip": {"enabled": True, "existingClaim": "geoip-databases",
                              "asnFile": "GeoLite2-ASN.mmdb"}},
    "geoip-secret": {"mode": "daemonset", "geoip": {"enabled": True, "secretName": "geoip",
                                                    "cityFile": "GeoLite2-Country.mmdb"}},
    "geoip-configmap": {"geoip": {"enabled": True, "configMapName": "geoip",
                                  "cityFile": "", "asnFile": "GeoLite2-ASN.mmdb"}},
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values=values, name=RELEASE, namespace="logs", is_install=True)
    documents: list[dict[str, Any]] = []
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def workload(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [doc for doc in documents if doc["kind"] in {"StatefulSet", "DaemonSet"}]  # receivers
    return found


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload(documents)["spec"]["template"]["spec"]["containers"]
    (receiver,) = [c for c in containers if c["name"] == "receiver"]
    return receiver


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in by_kind(documents, kind) if doc["metadata"]["name"] == name]
    return found


def config_toml(documents: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = named(documents, "ConfigMap", f"{RELEASE}-haproxy-receiver")
    config: dict[str, Any] = tomllib.loads(config_map["data"]["config.toml"])
    return config


def pod_spec(documents: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = workload(documents)["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("mode", MODES)
def test_every_manifest_validates_against_kubernetes_schemas(mode: str) -> None:
    documents = render(MODES[mode])
    assert documents
    for doc in documents:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no upstream schema; checked in test_service_monitor_*
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("mode", MODES)
def test_lint_is_clean(mode: str) -> None:
    report = helm.lint(CHART, MODES[mode], strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("mode", MODES)
def test_rendered_configuration_is_accepted_by_the_receiver(mode: str, tmp_path: Path) -> None:
    documents = render(MODES[mode])
    settings_file = tmp_path / "config.toml"
    config_map = named(documents, "ConfigMap", f"{RELEASE}-haproxy-receiver")
    settings_file.write_text(config_map["data"]["config.toml"])
    secret_files = config_toml(documents).get("elasticsearch", {}).get("password_file")
    if secret_files:  # mounted from a Secret in a pod; stand one in here
        (tmp_path / "password").write_text("from-the-secret\n")
        settings_file.write_text(settings_file.read_text().replace(secret_files, str(tmp_path / "password")))
    settings = load_settings(settings_file, env={})
    assert settings.listen.udp == ["0.0.0.0:5140"]
    assert settings.metrics.listen == "0.0.0.0:9514"
    assert settings.spool.dir == "/var/lib/haproxy-receiver/spool"


def test_binds_all_interfaces_and_ports_line_up_with_services() -> None:
    documents = render({})
    config = config_toml(documents)
    assert config["listen"]["udp"] == ["0.0.0.0:5140"]
    assert config["listen"]["tcp"] == ["0.0.0.0:5140"]
    ports = {p["name"]: p for p in container(documents)["ports"]}
    services = {s["metadata"]["name"]: s for s in by_kind(documents, "Service")}
    syslog = services[f"{RELEASE}-haproxy-receiver"]["spec"]["ports"]
    assert {(p["protocol"], p["port"], p["targetPort"]) for p in syslog} == {
        ("UDP", 5140, "syslog-udp"), ("TCP", 5140, "syslog-tcp")}
    for port in syslog:
        assert ports[port["targetPort"]]["protocol"] == port["protocol"]
    metrics = services[f"{RELEASE}-haproxy-receiver-metrics"]["spec"]["ports"]
    assert metrics[0]["targetPort"] == "metrics" and ports["metrics"]["containerPort"] == 9514


def test_statefulset_keeps_its_spool_on_a_claim_and_is_probed_and_protected() -> None:
    documents = render({})
    statefulset = workload(documents)
    assert statefulset["kind"] == "StatefulSet"
    claims = statefulset["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["spool"]
    mounts = {m["name"]: m["mountPath"] for m in container(documents)["volumeMounts"]}
    assert mounts["spool"] == "/var/lib/haproxy-receiver"
    receiver = container(documents)
    assert receiver["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert receiver["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert receiver["resources"]["requests"]["cpu"]
    assert receiver["securityContext"]["readOnlyRootFilesystem"] is True
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (pdb,) = by_kind(documents, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]
    services = {s["metadata"]["name"] for s in by_kind(documents, "Service")}
    assert statefulset["spec"]["serviceName"] in services


def test_daemonset_mode_runs_one_receiver_per_node_on_host_ports() -> None:
    documents = render(MODES["daemonset"])
    daemonset = workload(documents)
    assert daemonset["kind"] == "DaemonSet"
    assert not by_kind(documents, "StatefulSet") and not by_kind(documents, "PodDisruptionBudget")
    pod = daemonset["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["spool"]["hostPath"]["path"] == "/var/lib/haproxy-receiver"
    assert {p.get("hostPort") for p in container(documents)["ports"] if p["name"] != "metrics"} == {5140}
    (init,) = pod["initContainers"]
    assert init["securityContext"]["capabilities"]["add"] == ["CHOWN"]


def test_credentials_come_from_the_secret_and_never_from_the_config_map() -> None:
    documents = render(MODES["statefulset"])
    env = {e["name"]: e for e in container(documents)["env"]}
    password = env["HAPROXY_RECEIVER_ELASTICSEARCH__PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "es-creds", "key": "password"}
    config = config_toml(documents)
    assert "password" not in config["elasticsearch"]
    assert config["elasticsearch"]["username"] == "shipper"
    assert config["elasticsearch"]["ca_file"] == "/etc/haproxy-receiver/es-ca/ca.crt"
    mounts = {m["name"]: m["mountPath"] for m in container(documents)["volumeMounts"]}
    assert mounts["es-ca"] == "/etc/haproxy-receiver/es-ca"


def test_tls_mode_serves_rfc5425_port_with_mounted_certificates() -> None:
    documents = render(TLS_VALUES)
    listen = config_toml(documents)["listen"]
    assert listen["tls"] == ["0.0.0.0:6514"] and listen["tcp"] == ["0.0.0.0:5140"]
    assert listen["tls_cert"] == "/etc/haproxy-receiver/tls/tls.crt"
    assert listen["tls_client_ca"] == "/etc/haproxy-receiver/client-ca/ca.crt"
    pod = workload(documents)["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"tls": "rcv-tls", "client-ca": "rcv-ca"}
    (syslog,) = [s for s in by_kind(documents, "Service")
                 if s["metadata"]["name"] == f"{RELEASE}-haproxy-receiver"]
    assert {(p["name"], p["protocol"], p["port"]) for p in syslog["spec"]["ports"]} == {
        ("syslog-udp", "UDP", 5140), ("syslog-tcp", "TCP", 5140), ("syslog-tls", "TCP", 6514)}


def test_tls_only_drops_the_plain_tcp_listener_and_port() -> None:
    documents = render({"tls": {**TLS_VALUES["tls"], "plainTcp": False}})
    assert config_toml(documents)["listen"]["tcp"] == []
    names = {p["name"] for p in container(documents)["ports"]}
    assert names == {"syslog-udp", "syslog-tls", "metrics"}


def test_service_monitor_selects_only_the_metrics_service_port() -> None:
    assert not by_kind(render({}), "ServiceMonitor")
    documents = render(MODES["servicemonitor"])
    (monitor,) = by_kind(documents, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    wanted = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in by_kind(documents, "Service")
                if wanted.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == [f"{RELEASE}-haproxy-receiver-metrics"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}


def test_settings_owned_by_the_chart_are_refused_in_config() -> None:
    with pytest.raises(helm.HelmError, match=r"config\.listen\.udp is set by the chart"):
        render({"config": {"listen": {"udp": ["127.0.0.1:1"]}}})


def test_unknown_mode_is_refused_with_allowed_values() -> None:
    with pytest.raises(helm.HelmError, match="allowed: statefulset, daemonset"):
        render({"mode": "deployment"})


def test_config_values_reach_the_toml_with_their_types() -> None:
    config = config_toml(render({"config": {
        "parse": {"labels": {"labels.group": 'web "asg"'}, "timezone": "Europe/Paris"},
        "elasticsearch": {"batch_events": 5000, "compression": False},
    }}))
    assert config["parse"]["labels"] == {"labels.group": 'web "asg"'}
    assert config["parse"]["timezone"] == "Europe/Paris"
    assert config["elasticsearch"]["batch_events"] == 5000
    assert config["elasticsearch"]["compression"] is False


# --- extra volumes, environment, annotations ---------------------------------------------------

def test_extra_volumes_env_from_and_pod_annotations_reach_the_pod() -> None:
    documents = render(MODES["extras"])
    pod = pod_spec(documents)
    receiver = container(documents)
    assert receiver["envFrom"] == [{"secretRef": {"name": "receiver-env"}}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["es-password"]["secret"] == {"secretName": "es-shipper"}
    mounts = {m["name"]: m for m in receiver["volumeMounts"]}
    assert mounts["es-password"]["mountPath"] == "/etc/haproxy-receiver/es-password"
    assert config_toml(documents)["elasticsearch"]["password_file"].startswith(
        mounts["es-password"]["mountPath"] + "/")
    annotations = workload(documents)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/team"] == "edge" and "checksum/config" in annotations
    assert "envFrom" not in container(render({}))


# --- alert rules and dashboard: one source each -------------------------------------------------

@pytest.mark.parametrize(("link", "source"), [("alerts.yml", ALERTS), ("grafana-dashboard.json", GRAFANA)])
def test_chart_files_are_links_to_the_repository_copies(link: str, source: Path) -> None:
    # Helm reads only inside the chart; a symbolic link (followed by Helm and `helm package`)
    # keeps one definition instead of a hand copy that drifts.
    path = CHART / "files" / link
    assert path.is_symlink()
    assert path.resolve() == source.resolve()


def test_prometheus_rule_carries_the_shipped_alert_rules() -> None:
    assert not by_kind(render({}), "PrometheusRule")
    documents = render(MODES["monitoring"])
    (rule,) = by_kind(documents, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: apt-get install prometheus")
def test_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    (rule,) = by_kind(render(MODES["monitoring"]), "PrometheusRule")
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_grafana_dashboard_config_map_for_the_sidecar() -> None:
    documents = render(MODES["monitoring"])
    dashboard = named(documents, "ConfigMap", f"{RELEASE}-haproxy-receiver-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Logging"}
    assert json.loads(dashboard["data"]["haproxy-receiver.json"]) == json.loads(GRAFANA.read_text())
    other = render({"grafanaDashboard": {"enabled": True, "label": "dashboards", "labelValue": "grafana",
                                         "namespace": "monitoring"}})
    moved = named(other, "ConfigMap", f"{RELEASE}-haproxy-receiver-dashboard")
    assert moved["metadata"]["labels"]["dashboards"] == "grafana"
    assert moved["metadata"]["namespace"] == "monitoring"


# --- network policy -----------------------------------------------------------------------------

def test_network_policy_opens_exactly_the_served_ports_to_the_named_peers() -> None:
    assert not by_kind(render({}), "NetworkPolicy")
    documents = render(MODES["networkpolicy"])
    (policy,) = by_kind(documents, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == workload(documents)["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    syslog, metrics = spec["ingress"]
    served = {(p["protocol"], p["containerPort"]) for p in container(documents)["ports"]}
    opened = {(p["protocol"], p["port"]) for rule in spec["ingress"] for p in rule["ports"]}
    assert opened == served
    assert syslog["from"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert metrics["ports"] == [{"port": 9514, "protocol": "TCP"}]
    assert metrics["from"][0]["namespaceSelector"]
    dns, elasticsearch = spec["egress"]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert elasticsearch["ports"] == [{"port": 9200, "protocol": "TCP"}]
    open_policy = by_kind(render({"networkPolicy": {"enabled": True}}), "NetworkPolicy")[0]["spec"]
    assert open_policy["policyTypes"] == ["Ingress"] and "egress" not in open_policy
    assert all("from" not in rule for rule in open_policy["ingress"])  # anyone, ports only


# --- GeoIP ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "source", "settings"), [
    ("geoip-claim", {"persistentVolumeClaim": {"claimName": "geoip-databases", "readOnly": True}},
     {"geoip_database": "/usr/share/GeoIP/GeoLite2-City.mmdb",
      "asn_database": "/usr/share/GeoIP/GeoLite2-ASN.mmdb"}),
    ("geoip-secret", {"secret": {"secretName": "geoip"}},
     {"geoip_database": "/usr/share/GeoIP/GeoLite2-Country.mmdb"}),
    ("geoip-configmap", {"configMap": {"name": "geoip"}},
     {"asn_database": "/usr/share/GeoIP/GeoLite2-ASN.mmdb"}),
])
def test_geoip_databases_are_mounted_where_the_settings_point(
        mode: str, source: dict[str, Any], settings: dict[str, str]) -> None:
    documents = render(MODES[mode])
    (volume,) = [v for v in pod_spec(documents)["volumes"] if v["name"] == "geoip"]
    assert {k: v for k, v in volume.items() if k != "name"} == source
    mounts = {m["name"]: m for m in container(documents)["volumeMounts"]}
    assert mounts["geoip"] == {"name": "geoip", "mountPath": "/usr/share/GeoIP", "readOnly": True}
    parse = config_toml(documents)["parse"]
    assert {k: parse[k] for k in ("geoip_database", "asn_database") if k in parse} == settings
    for path in settings.values():
        assert path.startswith(mounts["geoip"]["mountPath"] + "/")


def test_geoip_needs_exactly_one_source_and_owns_the_database_settings() -> None:
    with pytest.raises(helm.HelmError, match=r"exactly one of geoip\.existingClaim"):
        render({"geoip": {"enabled": True}})
    with pytest.raises(helm.HelmError, match=r"exactly one of geoip\.existingClaim"):
        render({"geoip": {"enabled": True, "existingClaim": "a", "secretName": "b"}})
    with pytest.raises(helm.HelmError, match=r"config\.parse\.geoip_database is set by the chart"):
        render({"geoip": {"enabled": True, "existingClaim": "a"},
                "config": {"parse": {"geoip_database": "/elsewhere.mmdb"}}})
    # Without the chart's GeoIP volume, the setting is the user's (e.g. with extraVolumes).
    assert config_toml(render({"config": {"parse": {"geoip_database": "/data/City.mmdb"}}}))[
        "parse"]["geoip_database"] == "/data/City.mmdb"


def test_kafka_workers_run_consume_as_a_deployment_the_receivers_services_do_not_select() -> None:
    documents = render(MODES["kafka-workers"])
    (deployment,) = by_kind(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]
    (worker,) = pod["spec"]["containers"]
    assert worker["command"][:2] == ["haproxy-receiver", "consume"]
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in worker["env"]}
    assert env["HAPROXY_RECEIVER_ELASTICSEARCH__PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "es-creds", "key": "password"}
    labels = pod["metadata"]["labels"]
    for service in by_kind(documents, "Service"):
        selector = service["spec"]["selector"]
        assert not selector.items() <= labels.items(), service["metadata"]["name"]
    assert config_toml(documents)["kafka"]["bootstrap_servers"][0] == "kafka-0.kafka:9092"
    assert container(documents)["command"][:2] == ["haproxy-receiver", "run"]  # they produce


def test_the_workers_pods_have_their_own_network_policy_opening_only_metrics() -> None:
    assert len(by_kind(render(MODES["networkpolicy"]), "NetworkPolicy")) == 1  # no workers
    documents = render(MODES["kafka-workers-networkpolicy"])
    receivers, workers = sorted(by_kind(documents, "NetworkPolicy"),
                                key=lambda doc: doc["metadata"]["name"])
    (deployment,) = by_kind(documents, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    spec = workers["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert not receivers["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    (metrics,) = spec["ingress"]
    served = {(p["protocol"], p["containerPort"]) for p in deployment["spec"]["template"]["spec"][
        "containers"][0]["ports"]}
    assert {(p["protocol"], p["port"]) for p in metrics["ports"]} == served == {("TCP", 9514)}
    assert metrics["from"][0]["namespaceSelector"]
    dns, brokers = spec["egress"]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert brokers["ports"] == [{"port": 9092, "protocol": "TCP"}]


def test_workers_without_kafka_are_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"config\.kafka\.bootstrap_servers"):
        render({"workers": {"enabled": True}})


def notes(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values=values, name=RELEASE, namespace="logs", is_install=True)
    return str(next(text for path, text in rendered.items() if path.endswith("NOTES.txt")))


def test_notes_name_the_address_the_service_type_offers() -> None:
    """A LoadBalancer's senders are outside the cluster: an in-cluster name alone misleads them
    (issue 26, item 7)."""
    balanced = notes({"service": {"type": "LoadBalancer"}})
    assert "<load balancer address>:5140" in balanced and "status.loadBalancer.ingress" in balanced
    assert "<load balancer address>" not in notes({})
    assert "node port" in notes({"service": {"type": "NodePort"}})


def test_the_workers_metrics_are_scraped_by_a_pod_monitor_selecting_only_them() -> None:
    assert not by_kind(render(MODES["kafka-workers"]), "PodMonitor")  # no monitoring asked
    assert not by_kind(render(MODES["servicemonitor"]), "PodMonitor")  # no workers
    documents = render(MODES["kafka-workers-monitoring"])
    (monitor,) = by_kind(documents, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    wanted = monitor["spec"]["selector"]["matchLabels"]
    pods = {doc["metadata"]["name"]: doc["spec"]["template"] for doc in documents
            if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}}
    selected = [name for name, pod in pods.items()
                if wanted.items() <= pod["metadata"]["labels"].items()]
    assert selected == [f"{RELEASE}-haproxy-receiver-worker"]  # the workers, not the receivers
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    (worker,) = pods[selected[0]]["spec"]["containers"]
    assert endpoint["port"] in {p["name"] for p in worker["ports"]}
    assert endpoint["interval"] == "30s"
    # The receivers keep their ServiceMonitor, which never selects the workers' pods.
    (service_monitor,) = by_kind(documents, "ServiceMonitor")
    services = service_monitor["spec"]["selector"]["matchLabels"]
    assert not services.items() <= pods[selected[0]]["metadata"]["labels"].items()

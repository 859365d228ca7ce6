"""deploy/: the Kubernetes manifests agree with their ConfigMap (which
check-config accepts, rules included) and the probes name the endpoints the
proxy serves; the sample unit and logrotate stanza use what the proxy does."""
from __future__ import annotations

import subprocess
import tomllib

import yaml

from servers import REPO

K8S = REPO / "deploy" / "kubernetes"


def load(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def test_kubernetes_configmap_passes_check_config(proxy_bin, tmp_path):
    [cm] = load("configmap.yaml")
    data = cm["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text.replace("/etc/ftpwarden/", f"{tmp_path}/"))
    r = subprocess.run([proxy_bin, "check-config", str(tmp_path / "ftpwarden.toml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_kubernetes_ports_and_probes_agree(proxy_bin):
    [cm] = load("configmap.yaml")
    cfg = tomllib.loads(cm["data"]["ftpwarden.toml"])
    lo, hi = map(int, cfg["data"]["passive_ports"].split("-"))
    listen_port = int(cfg["listen"]["address"].rsplit(":", 1)[1])
    metrics_port = int(cfg["metrics"]["listen"].rsplit(":", 1)[1])
    [deploy] = load("deployment.yaml")
    [svc] = load("service.yaml")
    [container] = deploy["spec"]["template"]["spec"]["containers"]
    ports = {p["containerPort"] for p in container["ports"]}
    assert set(range(lo, hi + 1)) | {listen_port, metrics_port} <= ports
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        port = container[probe]["httpGet"]["port"]
        assert port == metrics_port or any(p.get("name") == port and p["containerPort"] == metrics_port
                                           for p in container["ports"]), probe
    svc_ports = {p["port"] for p in svc["spec"]["ports"]}
    assert set(range(lo, hi + 1)) <= svc_ports  # passive ports map one to one
    grace = cfg.get("limits", {}).get("shutdown_grace_s", 30)
    assert deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_systemd_unit_and_logrotate():
    unit = (REPO / "deploy" / "ftpwarden.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    rot = (REPO / "deploy" / "logrotate.conf").read_text()
    assert "USR1" in rot and "copytruncate" not in rot.replace("Not copytruncate", "")

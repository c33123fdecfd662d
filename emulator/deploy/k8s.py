"""`caspian deploy k8s`: a topology across machines as Kubernetes manifests.

Each machine of the placement becomes a pod running the caspian agent
(emulator.multihost.agent) on a Kubernetes node of its own, and a headless
Service giving it a stable DNS name; a Job runs the coordinator. What is
written (`manifests`), in the order `kubectl apply -f DIR` takes them:

- `00-namespace.yaml`: the Namespace, so deleting it removes everything;
- `10-secret.yaml`: the run's shared secret (a fresh one per deploy; the
  file is mode 0600, as the agents want theirs);
- `20-config.yaml`: a ConfigMap with the scenario text and the agents file
  (each machine's Service name);
- `30-machines.yaml`: per machine a Pod and its headless Service. The pod
  is privileged (network namespaces, AF_PACKET sockets, VXLAN devices),
  its CPUs and memory from emulator.deploy.sizing, requests equal to limits
  (the Guaranteed class), and anti-affine to the run's other machines, so
  two never share a node (each is a machine);
- `40-coordinator.yaml`: the Job, once (restartPolicy Never, backoffLimit
  0: a failed verdict is not retried into a pass). Today it runs the
  preflight (`caspian validate --agents --json`: every agent reached, each
  underlay measured, each crossing link checked); the run across machines
  itself is not built yet (docs/multihost.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

import emulator
from emulator.deploy.sizing import MachineSize, size_machine
from emulator.errors import InputError
from emulator.model.placement import Placement
from emulator.multihost.rpc import DEFAULT_PORT, new_secret
from emulator.scenario.scenario import Scenario

#: VXLAN's IANA port (RFC 7348 sec. 5): the crossing links' tunnels
VXLAN_PORT = 4789
#: where the pods mount the secret and the config
SECRET_DIR = "/etc/caspian/secret"
CONFIG_DIR = "/etc/caspian/config"
#: how long the coordinator waits for the agents' pods to be scheduled, pull the image and listen
AGENTS_WAIT_S = 300
#: labels every object of a run carries (the recommended app.kubernetes.io keys)
APP = "caspian"


#: a DNS label (RFC 1123), what Kubernetes names most objects with
DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def dns_label(text: str, where: str) -> str:
    """`text` if it is a DNS label, else a one-line InputError."""
    if not DNS_LABEL.fullmatch(text):
        raise InputError(f"{text!r} is not a DNS label", where=where,
                         fix="use at most 63 of a-z, 0-9 and '-', not starting or ending with '-'")
    return text


def run_label(name: str) -> str:
    """The run's name made a DNS label short enough for `<run>-<machine>` (machines are up to 31 characters)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:31].strip("-")
    return label or "caspian"


def default_image() -> str:
    """The image the pods run unless told: caspian at this version (built from this tree: none is published)."""
    return f"caspian:{emulator.__version__}"


def machine_sizes(scenario: Scenario, placement: Placement) -> dict[str, MachineSize]:
    """Each machine's size: its nodes, its routers (a daemon each when routing is dynamic),
    the ends of streams on its nodes, the links its engine serves."""
    topology = scenario.topology
    where = placement.by_node()
    roles = {node.name: node.role for node in topology.nodes}
    daemon = topology.routing.daemon if topology.routing is not None else "bird"
    out = {}
    for machine, nodes in placement.machines:
        # a machine's engine serves its own links and the crossing links it owns (those of its `a` ends)
        links = sum(1 for link in topology.links if where[link.a.node] == machine)
        routers = sum(1 for node in nodes if roles[node] == "router") if topology.dynamic_routing else 0
        ends: dict[str, int] = {}
        for spec in scenario.traffic:
            ends[spec.kind] = ends.get(spec.kind, 0) + (where[spec.source] == machine) + (where[spec.target] == machine)
        out[machine] = size_machine(len(nodes), links, routers=routers, daemon=daemon, stream_ends=ends,
                                    shards=topology.engine_shards or 1)
    return out


def _labels(run: str, **more: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": run, **more}


def _service_name(run: str, machine: str) -> str:
    return f"{run}-{machine}"


def manifests(scenario: Scenario, placement: Placement, scenario_text: str, *, namespace: str,
              image: str, secret: str) -> dict[str, list[dict[str, Any]]]:
    """file name -> the objects it holds (module docstring)."""
    run = run_label(scenario.topology.name)
    sizes = machine_sizes(scenario, placement)
    agents_text = "agents:\n" + "".join(
        f"  {machine}: {_service_name(run, machine)}.{namespace}.svc:{DEFAULT_PORT}\n" for machine in placement.names)
    meta = {"namespace": namespace, "labels": _labels(run)}
    secret_volume = {"name": "secret", "secret": {"secretName": f"{run}-secret", "defaultMode": 0o400}}
    config_volume = {"name": "config", "configMap": {"name": f"{run}-config"}}
    mounts = [{"name": "secret", "mountPath": SECRET_DIR, "readOnly": True},
              {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]
    out: dict[str, list[dict[str, Any]]] = {
        "00-namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": namespace, "labels": _labels(run)}}],
        "10-secret.yaml": [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": f"{run}-secret", **meta}, "stringData": {"secret": secret}}],
        "20-config.yaml": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{run}-config", **meta},
                            "data": {"scenario.yaml": scenario_text, "agents.yaml": agents_text}}],
    }
    machines: list[dict[str, Any]] = []
    for machine in placement.names:
        size = sizes[machine]
        resources = {"cpu": str(size.cpus), "memory": f"{size.memory_mib}Mi"}
        labels = _labels(run, **{"caspian/machine": machine})
        machines.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": _service_name(run, machine), "namespace": namespace, "labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    # the run's other machines (the coordinator's pod may share a node)
                    "labelSelector": {"matchLabels": _labels(run),
                                      "matchExpressions": [{"key": "caspian/machine", "operator": "Exists"}]},
                    "topologyKey": "kubernetes.io/hostname"}]}},
                "containers": [{
                    "name": "agent", "image": image,
                    "command": ["caspian", "agent", "--machine", machine, "--listen", f"0.0.0.0:{DEFAULT_PORT}",
                                "--secret-file", f"{SECRET_DIR}/secret"],
                    "ports": [{"name": "rpc", "containerPort": DEFAULT_PORT, "protocol": "TCP"},
                              {"name": "vxlan", "containerPort": VXLAN_PORT, "protocol": "UDP"}],
                    "securityContext": {"privileged": True},
                    "resources": {"requests": dict(resources), "limits": dict(resources)},
                    "readinessProbe": {"tcpSocket": {"port": DEFAULT_PORT}, "periodSeconds": 2},
                    "volumeMounts": mounts,
                }],
                "volumes": [secret_volume, config_volume],
            },
        })
        machines.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": _service_name(run, machine), **meta},
            "spec": {"clusterIP": "None", "selector": labels, "publishNotReadyAddresses": False,
                     "ports": [{"name": "rpc", "port": DEFAULT_PORT, "protocol": "TCP"},
                               {"name": "vxlan", "port": VXLAN_PORT, "protocol": "UDP"}]},
        })
    out["30-machines.yaml"] = machines
    out["40-coordinator.yaml"] = [{
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{run}-coordinator", **meta},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": _labels(run, **{"caspian/role": "coordinator"})},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "coordinator", "image": image,
                        "command": ["caspian", "validate", f"{CONFIG_DIR}/scenario.yaml",
                                    "--agents", f"{CONFIG_DIR}/agents.yaml",
                                    "--secret-file", f"{SECRET_DIR}/secret", "--json",
                                    "--wait-agents", str(AGENTS_WAIT_S)],
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "1", "memory": "256Mi"}},
                        "volumeMounts": mounts,
                    }],
                    "volumes": [secret_volume, config_volume],
                },
            },
        },
    }]
    return out


class _PlainDumper(yaml.SafeDumper):
    """safe_dump without anchors and aliases: each object written out in full, as kubectl users read them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_manifests(out_dir: str | Path, files: dict[str, list[dict[str, Any]]]) -> list[Path]:
    """Write each file into `out_dir` (created; refused when it exists and is not empty), the secret mode 0600."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("the directory exists and is not empty", where=str(out),
                         fix="give a new directory: a deploy never overwrites manifests (they hold a secret)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the directory: {exc.strerror}", where=str(out), fix="give a writable path") from None
    written = []
    for name, objects in files.items():
        path = out / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if "secret" in name else 0o644)
        with os.fdopen(fd, "w") as handle:
            yaml.dump_all(objects, handle, Dumper=_PlainDumper, sort_keys=False)
        written.append(path)
    return written


def deploy_k8s(scenario: Scenario, placement: Placement, scenario_text: str, out_dir: str | Path, *,
               namespace: str, image: str) -> list[Path]:
    """The manifests of this run, written into `out_dir`, with a fresh secret."""
    return write_manifests(out_dir, manifests(scenario, placement, scenario_text, namespace=namespace,
                                              image=image, secret=new_secret()))

"""`caspian deploy k8s`: the manifests checked against Kubernetes' own schemas (kubernetes-validate), and their sizes (no root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from emulator.deploy.sizing import DAEMON_MIB, ENGINE_BASE_MIB, ENGINE_PER_LINK_MIB, STREAM_END_MIB, size_machine
from emulator.multihost.coordinator import read_agents
from emulator.multihost.rpc import read_secret
from emulator.scenario.loader import parse_scenario

ROOT = Path(__file__).resolve().parents[2]
CORRIDOR = (ROOT / "scenarios" / "europe_asia_corridor.yaml").read_text()


def _deploy(tmp_path: Path, text: str, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    scenario = tmp_path / "placed.yaml"
    scenario.write_text(text)
    out = tmp_path / "manifests"
    result = subprocess.run([sys.executable, "-m", "emulator.cli", "deploy", "k8s", str(scenario), "--out", str(out),
                             *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    return result, out


def test_the_corridor_on_two_machines_deploys_as_valid_manifests(tmp_path: Path) -> None:
    result, out = _deploy(tmp_path, CORRIDOR + "\nplacement: 2\n", "--namespace", "corridor-ci")
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["00-namespace.yaml", "10-secret.yaml", "20-config.yaml", "30-machines.yaml", "40-coordinator.yaml"]
    objects = [doc for name in files for doc in yaml.safe_load_all((out / name).read_text())]
    for obj in objects:   # each object against the API's OpenAPI schema, unknown fields refused
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    kinds = [obj["kind"] for obj in objects]
    assert kinds == ["Namespace", "Secret", "ConfigMap", "Pod", "Service", "Pod", "Service", "Job"]
    assert all(obj["metadata"].get("namespace", "corridor-ci") == "corridor-ci" for obj in objects)

    # the secret: fresh, private on disk, and what an agent would read
    assert os.stat(out / "10-secret.yaml").st_mode & 0o777 == 0o600
    secret = objects[1]["stringData"]["secret"]
    (tmp_path / "s").write_text(secret)
    os.chmod(tmp_path / "s", 0o600)
    assert len(read_secret(tmp_path / "s")) == 32

    # the config: the scenario as given, and an agents file the coordinator reads, naming each machine's Service
    config = objects[2]["data"]
    placed = parse_scenario(config["scenario.yaml"], source="cm", across_machines=True).topology
    assert placed.placement == 2
    (tmp_path / "agents.yaml").write_text(config["agents.yaml"])
    agents = read_agents(tmp_path / "agents.yaml")
    pods = [obj for obj in objects if obj["kind"] == "Pod"]
    services = [obj for obj in objects if obj["kind"] == "Service"]
    assert {machine: host.split(".")[0] for machine, (host, _) in agents.items()} == \
        {pod["spec"]["containers"][0]["command"][3]: svc["metadata"]["name"] for pod, svc in zip(pods, services)}

    for pod, service in zip(pods, services):
        container = pod["spec"]["containers"][0]
        # Guaranteed QoS: whole CPUs, requests equal to limits (so the static CPU manager pins them)
        assert container["resources"]["requests"] == container["resources"]["limits"]
        assert container["securityContext"] == {"privileged": True}
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["selector"] == pod["metadata"]["labels"]
        # no two machines on one node
        term = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["topologyKey"] == "kubernetes.io/hostname"
    job = objects[-1]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert "--agents" in job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "machine host1:" in result.stdout and "the run across machines is not built yet" in result.stdout


def test_a_bad_deploy_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    result, out = _deploy(tmp_path, CORRIDOR)   # no placement
    assert result.returncode == 2 and "no 'placement:' section" in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()
    result, out = _deploy(tmp_path, CORRIDOR + "\nplacement: 2\n", "--namespace", "Corridor_CI")
    assert result.returncode == 2 and "--namespace: 'Corridor_CI' is not a DNS label" in result.stderr
    assert not out.exists()
    out.mkdir()
    (out / "keep").write_text("mine")
    result, _ = _deploy(tmp_path, CORRIDOR + "\nplacement: 2\n")
    assert result.returncode == 2 and "exists and is not empty" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep"]


def test_a_machine_is_sized_from_what_it_runs() -> None:
    small = size_machine(nodes=2, engine_links=2)
    assert small.cpus == 2 and small.memory_mib == 128     # the engine's core and one for the nodes; (32 + 32.6 + 0.5) x 1.5
    routers = size_machine(nodes=500, engine_links=1000, routers=500, daemon="frr", stream_ends={"probe": 2}, shards=3)
    assert routers.cpus == 4 and routers.memory_mib % 64 == 0
    # the parts add up: 500 FRR routers and two probe ends dwarf the 1000 links
    assert routers.process_mib == 500 * DAEMON_MIB["frr"] + 2 * STREAM_END_MIB["probe"]
    assert routers.memory_mib >= 1.5 * (routers.process_mib + ENGINE_PER_LINK_MIB * 1000)
    # the engine's share alone, as measured: 0.15 MiB a link over a 32.3 MiB base
    assert ENGINE_BASE_MIB + ENGINE_PER_LINK_MIB * 181 == pytest.approx(59.3, abs=0.2)

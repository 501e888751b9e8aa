"""The cluster files: the Ray cluster-launcher YAML passes Ray's own config validation (what `ray up` runs), the
KubeRay RayJob matches the CRD's fields and types, and both run the project's sweep with the two lab settings."""

from __future__ import annotations

import copy
import ipaddress
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from cli import main

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "deploy" / "ray-cluster.yaml"
RAYJOB = ROOT / "deploy" / "rayjob.yaml"
JOB_SCRIPT = ROOT / "deploy" / "sweep-job.sh"


def _sweep_args(argv: list[str]) -> dict:
    """Parse a sweep command line with the real click command (no run): unknown or malformed options fail here."""
    assert argv[:3] == ["python", "cli.py", "sweep"], argv
    command = main.get_command(None, "sweep")  # type: ignore[arg-type]
    ctx = command.make_context("sweep", list(argv[3:]))
    return ctx.params


def test_cluster_launcher_passes_rays_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(LAUNCHER.read_text())
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does before it validates
    validate_config(prepared)
    assert config["provider"]["type"] == "local"
    for ip in [config["provider"]["head_ip"], *config["provider"]["worker_ips"]]:
        ipaddress.ip_address(ip)
    assert prepared["max_workers"] == len(config["provider"]["worker_ips"])
    setup = " ".join(config["setup_commands"])
    assert "pip install -q -r requirements.txt" in setup and "/shared/bubbles" in setup
    env = " ".join(config["head_setup_commands"])
    assert "BUBBLES_STORAGE=/shared/bubbles/sweeps" in env and "MLFLOW_TRACKING_URI=http://" in env  # the two edits


def test_sweep_job_script_is_the_sweep_on_the_cluster() -> None:
    subprocess.run(["bash", "-n", str(JOB_SCRIPT)], check=True)
    line = next(x for x in JOB_SCRIPT.read_text().splitlines() if "cli.py sweep" in x)
    assert '--address auto --storage "$BUBBLES_STORAGE"' in JOB_SCRIPT.read_text() and ".venv/bin/python cli.py sweep" in line


# The RayJob fields this manifest uses, with the types and required keys of KubeRay's ray.io/v1 CRD
# (rayStartParams is a map of strings there: a number is refused by the API server).
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_POD = {
    "type": "object", "required": ["spec"],
    "properties": {"spec": {"type": "object", "required": ["containers"], "properties": {
        "containers": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name", "image"], "properties": {
            "name": {"type": "string"}, "image": {"type": "string"}, "workingDir": {"type": "string"},
            "resources": {"type": "object", "properties": {"limits": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}}},
            "volumeMounts": {"type": "array", "items": {"type": "object", "required": ["name", "mountPath"]}}}}},
        "volumes": {"type": "array", "items": {"type": "object", "required": ["name"]}}}}},
}
RAYJOB_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {"type": "object", "required": ["entrypoint", "rayClusterSpec"], "additionalProperties": False, "properties": {
            "entrypoint": {"type": "string"}, "runtimeEnvYAML": {"type": "string"},
            "shutdownAfterJobFinishes": {"type": "boolean"}, "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
            "rayClusterSpec": {"type": "object", "required": ["headGroupSpec"], "additionalProperties": False, "properties": {
                "rayVersion": {"type": "string"},
                "headGroupSpec": {"type": "object", "required": ["template"], "properties": {"rayStartParams": _STRINGS, "template": _POD}},
                "workerGroupSpecs": {"type": "array", "items": {"type": "object", "required": ["groupName", "template"], "properties": {
                    "groupName": {"type": "string"}, "replicas": {"type": "integer"}, "minReplicas": {"type": "integer"},
                    "maxReplicas": {"type": "integer"}, "rayStartParams": _STRINGS, "template": _POD}}}}}}},
    },
}


def test_rayjob_matches_the_crd_and_runs_the_sweep_on_the_shared_storage() -> None:
    job = yaml.safe_load(RAYJOB.read_text())
    jsonschema.validate(job, RAYJOB_SCHEMA)
    spec = job["spec"]
    ray_pin = next(x for x in (ROOT / "requirements.txt").read_text().splitlines() if x.startswith("ray["))
    assert spec["rayClusterSpec"]["rayVersion"] == ray_pin.split("==")[1]
    params = _sweep_args(shlex.split(spec["entrypoint"]))
    assert params["address"] == "auto" and (ROOT / params["space_file"]).is_file()
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env["MLFLOW_TRACKING_URI"].startswith("http://")
    groups = [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"]]
    claims = set()
    for group in groups:  # every pod mounts the shared storage where the sweep writes
        pod = group["template"]["spec"]
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert any(str(params["storage"]).startswith(m + "/") for m in mounts), (mounts, params["storage"])
        claims |= {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert len(claims) == 1
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for g in spec["rayClusterSpec"]["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]
    assert gpus and all(gpus)


@pytest.mark.parametrize("text, message", [
    ("spec: {entrypoint: x}", "'rayClusterSpec' is a required property"),
    ("spec: {entrypoint: x, rayClusterSpec: {headGroupSpec: {rayStartParams: {num-gpus: 0}, template: {spec: {containers: []}}}}}", "is not of type 'string'"),
])
def test_the_rayjob_schema_refuses_what_kuberay_would(text: str, message: str) -> None:
    job = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "x"}} | yaml.safe_load(text)
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(job, RAYJOB_SCHEMA)

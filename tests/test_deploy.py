"""The cluster files: the Ray cluster-launcher YAML passes Ray's own config validation (what `ray up` runs), the
KubeRay RayJob matches KubeRay v1.7.0's CRD fields and types, the tracking server's manifest serves the URI the
RayJob gives its trials, and all run the project's sweep with the lab's settings (storage, store, tracking URI)."""

from __future__ import annotations

import copy
import ipaddress
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

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
    assert "BUBBLES_STORAGE=/shared/bubbles/sweeps" in env and "MLFLOW_TRACKING_URI=http://" in env  # the edits


def test_sweep_job_script_is_the_sweep_on_the_cluster() -> None:
    subprocess.run(["bash", "-n", str(JOB_SCRIPT)], check=True)
    line = next(x for x in JOB_SCRIPT.read_text().splitlines() if "cli.py sweep" in x)
    assert '--address auto --storage "$BUBBLES_STORAGE"' in JOB_SCRIPT.read_text() and ".venv/bin/python cli.py sweep" in line


# The RayJob fields deploy/rayjob.yaml uses, written from KubeRay v1.7.0's CRD
# (ray-operator/config/crd/bases/ray.io_rayjobs.yaml, version v1, openAPIV3Schema) and its admission checks
# (ray-operator/controllers/ray/utils/validation.go): names, required keys and types as the CRD defines them; only
# the fields used here are listed and unknown ones refused, as `kubectl apply` (strict field validation) refuses a
# field the CRD lacks. Not a copy of the CRD: a field this manifest does not use is absent here.
KUBERAY_VERSION = "v1.7.0"
_INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}  # validation.go refuses negative replicas/TTL
_QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "string", "pattern":
             r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"}]}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}  # rayStartParams: map[string]string
_CONTAINER = {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
    "name": {"type": "string"}, "image": {"type": "string"}, "workingDir": {"type": "string"},
    "resources": {"type": "object", "additionalProperties": False, "properties": {
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
        "requests": {"type": "object", "additionalProperties": _QUANTITY}}},
    "volumeMounts": {"type": "array", "items": {"type": "object", "required": ["mountPath", "name"], "additionalProperties": False,
                                                 "properties": {"name": {"type": "string"}, "mountPath": {"type": "string"},
                                                                "readOnly": {"type": "boolean"}}}}}}
_POD_TEMPLATE = {"type": "object", "required": ["spec"], "additionalProperties": False, "properties": {
    "metadata": {"type": "object"},
    "spec": {"type": "object", "required": ["containers"], "additionalProperties": False, "properties": {
        "containers": {"type": "array", "minItems": 1, "items": _CONTAINER},  # validation.go: at least one container
        "volumes": {"type": "array", "items": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
            "name": {"type": "string"},
            "persistentVolumeClaim": {"type": "object", "required": ["claimName"], "additionalProperties": False, "properties": {
                "claimName": {"type": "string"}, "readOnly": {"type": "boolean"}}}}}}}}},
}
RAYJOB_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"},
        # validation.go: a DNS-1035 label of at most 47 characters (the RayCluster's name limit less a suffix)
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": 47, "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string"}}},
        "spec": {"type": "object", "required": ["entrypoint", "rayClusterSpec"], "additionalProperties": False, "properties": {
            "entrypoint": {"type": "string"}, "runtimeEnvYAML": {"type": "string"},
            "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
            "shutdownAfterJobFinishes": {"type": "boolean"}, "ttlSecondsAfterFinished": _INT32,
            "activeDeadlineSeconds": _INT32, "backoffLimit": _INT32,
            "rayClusterSpec": {"type": "object", "required": ["headGroupSpec"], "additionalProperties": False, "properties": {
                "rayVersion": {"type": "string"},
                "headGroupSpec": {"type": "object", "required": ["template"], "additionalProperties": False, "properties": {
                    "rayStartParams": _STRINGS, "template": _POD_TEMPLATE}},
                "workerGroupSpecs": {"type": "array", "items": {
                    "type": "object", "required": ["groupName", "maxReplicas", "minReplicas", "template"], "additionalProperties": False,
                    "properties": {"groupName": {"type": "string"}, "replicas": _INT32, "minReplicas": _INT32,
                                   "maxReplicas": _INT32, "rayStartParams": _STRINGS, "template": _POD_TEMPLATE}}}}}}},
    },
}


def validate_rayjob(job: dict) -> None:
    """The schema, then the admission checks of validation.go it cannot say (minReplicas <= replicas <= maxReplicas)."""
    jsonschema.validate(job, RAYJOB_SCHEMA)
    for group in job["spec"]["rayClusterSpec"].get("workerGroupSpecs", []):
        low, high = group["minReplicas"], group["maxReplicas"]
        if low > high or not low <= group.get("replicas", low) <= high:
            raise jsonschema.ValidationError(f"worker group {group['groupName']}: replicas outside minReplicas..maxReplicas")


def _under_app(path: str) -> Path:
    """A path in the image (/app is the checkout: Dockerfile WORKDIR) as a path in this repository."""
    assert path.startswith("/app/"), path
    return ROOT / path.removeprefix("/app/")


def test_rayjob_matches_the_crd_and_runs_the_sweep_on_the_shared_storage() -> None:
    job = yaml.safe_load(RAYJOB.read_text())
    validate_rayjob(job)
    assert KUBERAY_VERSION in RAYJOB.read_text()  # the manifest names the version it was written for
    spec = job["spec"]
    ray_pin = next(x for x in (ROOT / "requirements.txt").read_text().splitlines() if x.startswith("ray["))
    assert spec["rayClusterSpec"]["rayVersion"] == ray_pin.split("==")[1]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "/app/cli.py", "sweep"] and _under_app(argv[1]).is_file()
    params = _sweep_args(["python", "cli.py", *argv[2:]])
    assert params["address"] == "auto" and _under_app(str(params["space_file"])).is_file()
    # KubeRay's submitter and operator reach the job API through the head's Service, not the pod's loopback.
    assert spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].get("dashboard-host", "0.0.0.0") == "0.0.0.0"
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    tracking = urlsplit(env["MLFLOW_TRACKING_URI"])
    assert tracking.scheme == "http" and not _is_loopback(tracking.hostname)
    groups = [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"]]
    claims = set()
    for group in groups:  # every pod mounts the shared storage where the sweep writes and the store it reads
        pod = group["template"]["spec"]
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        for path in (params["storage"], params["store"]):
            assert path is not None and path.is_absolute() and any(str(path).startswith(m + "/") for m in mounts), (mounts, path)
        claims |= {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert len(claims) == 1
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for g in spec["rayClusterSpec"]["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]
    assert gpus and all(gpus)


def test_the_tracking_server_manifest_serves_the_uri_the_rayjob_uses() -> None:
    """deploy/mlflow-server.yaml: the real `server` command's options; the Service's DNS name is the RayJob's
    MLFLOW_TRACKING_URI, and --allowed-hosts lets that Host header through (else every call is 403)."""
    service, deployment = list(yaml.safe_load_all((ROOT / "deploy" / "mlflow-server.yaml").read_text()))
    job = yaml.safe_load(RAYJOB.read_text())
    tracking = urlsplit(yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["MLFLOW_TRACKING_URI"])
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert tracking.hostname == f"{name}.{namespace}.svc.cluster.local" and namespace == job["metadata"]["namespace"]
    assert tracking.port in {p["port"] for p in service["spec"]["ports"]}
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert container["command"][:2] == ["bubbles-study", "server"]
    command = main.get_command(None, "server")  # type: ignore[arg-type]
    params = command.make_context("server", list(container["command"][2:])).params
    assert params["port"] == tracking.port and params["host"] == "0.0.0.0"
    assert tracking.netloc in params["allowed_hosts"].split(",")
    assert urlsplit(params["backend"]).password is None  # the password comes from the Secret (PGPASSWORD)
    assert any(str(params["artifacts"]).startswith(m["mountPath"] + "/") for m in container["volumeMounts"])
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "study.api_probe" in probe and tracking.netloc in probe


def test_the_launcher_gives_workers_a_tracking_uri_they_reach() -> None:
    config = yaml.safe_load(LAUNCHER.read_text())
    env = dict(re.findall(r"export (\w+)=(\S+?)'", " ".join(config["head_setup_commands"])))
    tracking = urlsplit(env["MLFLOW_TRACKING_URI"])
    assert tracking.hostname == config["provider"]["head_ip"]  # not loopback: trials on the workers use it as is
    assert env["BUBBLES_STORE"].startswith("/shared/") and env["BUBBLES_STORAGE"].startswith("/shared/")
    assert '--store "$BUBBLES_STORE"' in JOB_SCRIPT.read_text()


def _is_loopback(host: str | None) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


@pytest.mark.parametrize("edit, message", [
    (lambda j: j["spec"].pop("rayClusterSpec"), "'rayClusterSpec' is a required property"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].update({"num-gpus": 0}), "is not of type 'string'"),
    (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("minReplicas"), "'minReplicas' is a required property"),
    (lambda j: j["spec"].update({"entryPoint": "python x.py"}), "Additional properties are not allowed \\('entryPoint'"),
    (lambda j: j["metadata"].update({"name": "Bubbles_Sweep"}), "does not match"),
    (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"].update({"memory": "32 GB"}), "'32 GB' does not match"),
    (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update({"replicas": 3}), "replicas outside minReplicas..maxReplicas"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"].update({"containers": []}), "should be non-empty|is too short"),
])
def test_the_rayjob_schema_refuses_what_kuberay_would(edit: Callable[[dict], object], message: str) -> None:
    job = yaml.safe_load(RAYJOB.read_text())
    edit(job)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate_rayjob(job)


def test_sweep_store_replaces_the_spaces_store(tmp_path: Path, tiny_store: Path) -> None:
    """`sweep --store` (what the cluster files pass): the space's data.store is replaced, before anything starts."""
    from click.testing import CliRunner

    from study.space import load_space

    space = load_space(ROOT / "search_spaces" / "smoke.yaml", store=tiny_store)
    assert space.base["store"] == str(tiny_store.resolve())
    missing = tmp_path / "nowhere.zarr"
    result = CliRunner(env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}).invoke(
        main, ["sweep", str(ROOT / "search_spaces" / "smoke.yaml"), "--store", str(missing), "--storage", str(tmp_path / "s")])
    assert result.exit_code == 1 and str(missing) in result.output and len(result.output.splitlines()) == 1, result.output

"""The cluster configs under cluster/ and jobs/, checked without a cloud account.

- The Ray cluster-launcher configs validate against Ray's own JSON schema
  (``ray/autoscaler/ray-schema.json``, shipped inside the ray package) and survive Ray's
  config preparation (defaults merged, then validated again), as ``ray up`` does first.
- The KubeRay manifests parse and carry the fields KubeRay requires.
- Token authentication stays on everywhere, the dashboard is never bound to 0.0.0.0, and
  no token or secret is written in any file.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from packaging.version import Version

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")
ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHER_CONFIGS = ["aws.yaml", "gcp.yaml"]
GPU_INSTANCE = {"aws.yaml": "g5.", "gcp.yaml": "a2-highgpu-"}
TOKEN_SECRET = "raylanczos-ray-token"


def load(path: Path) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def ray_schema() -> dict:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text())


def effective_setup(config: dict, node_type: str) -> list[str]:
    """The setup commands Ray runs on a node of ``node_type`` (after ``prepare_config``)."""
    if node_type == config["head_node_type"]:
        return config["head_setup_commands"]
    return config["available_node_types"][node_type].get("worker_setup_commands", config["worker_setup_commands"])


# --- Ray cluster launcher ---------------------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_validates_against_rays_schema(name):
    jsonschema.validate(load(CLUSTER / name), ray_schema())


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_survives_rays_config_preparation(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(load(CLUSTER / name)))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_has_a_cpu_head_and_an_autoscaled_gpu_worker_type(name):
    from ray.autoscaler._private.util import prepare_config

    config = prepare_config(copy.deepcopy(load(CLUSTER / name)))
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["max_workers"] == 0
    assert head["resources"].get("GPU", 0) == 0, "the head must not offer GPUs: HVP workers belong on GPU nodes"
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert len(workers) == 1
    (gpu_type,) = workers.values()
    machine = gpu_type["node_config"].get("InstanceType") or gpu_type["node_config"].get("machineType")
    assert machine.startswith(GPU_INSTANCE[name]), machine
    assert gpu_type["min_workers"] == 0 < gpu_type["max_workers"] <= config["max_workers"]
    assert gpu_type["max_workers"] >= 16, "the guide scales to 16 GPUs"
    if name == "gcp.yaml":  # Google Cloud does not report accelerators to Ray
        assert gpu_type["resources"]["GPU"] == 1
        assert gpu_type["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert config["idle_timeout_minutes"] > 0


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_installs_raylanczos_with_jax_on_every_node(name):
    from ray.autoscaler._private.util import prepare_config

    config = prepare_config(copy.deepcopy(load(CLUSTER / name)))
    assert config["file_mounts"]["~/raylanczos"] == "."
    assert ".gitignore" in config["rsync_filter"]
    for node_type in config["available_node_types"]:
        setup = " ; ".join(effective_setup(config, node_type))
        assert re.search(r'pip install .*"\$HOME/raylanczos\[jax[],]', setup), (node_type, setup)
        is_gpu = node_type != config["head_node_type"]
        assert ('"jax[cuda12]"' in setup) == is_gpu, (node_type, setup)
    images = config["docker"]
    assert images["head_image"].startswith("rayproject/ray:") and "-gpu" not in images["head_image"]
    assert images["worker_image"].startswith("rayproject/ray:") and images["worker_image"].endswith("-gpu")
    assert "py311" in images["head_image"] and "py311" in images["worker_image"]  # requires-python >= 3.11
    assert "--gpus all" in images["worker_run_options"]


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_keeps_token_auth_and_a_loopback_dashboard(name):
    from ray.autoscaler._private.util import prepare_config

    config = prepare_config(copy.deepcopy(load(CLUSTER / name)))
    # The token comes from the user's own file, never from the config.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    head_start = " ".join(config["head_start_ray_commands"])
    worker_start = " ".join(config["worker_start_ray_commands"])
    for commands in (head_start, worker_start):
        assert "export RAY_AUTH_MODE=token;" in commands
    assert "--dashboard-host=127.0.0.1" in head_start
    for node_type in config["available_node_types"]:
        setup = " ; ".join(effective_setup(config, node_type))
        assert "chmod 600 ~/.ray/auth_token" in setup
        assert "export RAY_AUTH_MODE=token" in setup


# --- KubeRay --------------------------------------------------------------------------


def ray_containers(spec: dict) -> list[dict]:
    """The Ray containers of a RayCluster spec: the head's and every worker group's."""
    found = [spec["headGroupSpec"]["template"]["spec"]["containers"][0]]
    found += [group["template"]["spec"]["containers"][0] for group in spec["workerGroupSpecs"]]
    return found


def check_ray_cluster_spec(spec: dict) -> None:
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    for params in [head["rayStartParams"]] + [g["rayStartParams"] for g in spec["workerGroupSpecs"]]:
        for key, value in params.items():
            assert isinstance(value, str), f"rayStartParams {key}: KubeRay takes strings, got {value!r}"
    head_container = head["template"]["spec"]["containers"][0]
    assert head_container["image"]
    assert "nvidia.com/gpu" not in head_container["resources"].get("limits", {})
    assert Version(spec["rayVersion"]) >= Version("2.52"), "token authentication needs Ray >= 2.52"
    assert spec["workerGroupSpecs"], "a GPU worker group"
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] >= 16
        container = group["template"]["spec"]["containers"][0]
        assert container["image"]
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert int(limits["nvidia.com/gpu"]) >= 1
        assert requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"]) == limits["nvidia.com/gpu"]


def env_of(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def kuberay_spec(name: str, kind: str) -> dict:
    """The ``spec`` of ``cluster/kuberay/<name>``, after checking its KubeRay header."""
    manifest = load(CLUSTER / "kuberay" / name)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == kind
    assert manifest["metadata"]["name"]
    return manifest["spec"]


def test_raycluster_manifest_has_kuberay_required_fields():
    spec = kuberay_spec("raycluster.yaml", "RayCluster")
    check_ray_cluster_spec(spec)
    assert spec["enableInTreeAutoscaling"] is True


def test_raycluster_reads_the_token_from_a_secret_in_every_ray_container():
    spec = load(CLUSTER / "kuberay" / "raycluster.yaml")["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    containers = ray_containers(spec) + [spec["autoscalerOptions"]]
    for container in containers:
        env = env_of(container)
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "value" not in env["RAY_AUTH_TOKEN"], "the token must come from a Secret"
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": TOKEN_SECRET, "key": "auth_token"}


def test_rayjob_manifest_runs_the_example_and_cleans_up():
    spec = kuberay_spec("rayjob.yaml", "RayJob")
    assert spec["entrypoint"].startswith("raylanczos run --problem raylanczos.examples.digits:problem")
    assert "--gpus-per-worker 1" in spec["entrypoint"]
    assert re.search(r"--out (s3|gs)://", spec["entrypoint"]), "the cluster is deleted afterwards: write to object storage"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] >= 0
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    from ray.runtime_env import RuntimeEnv

    RuntimeEnv(**runtime_env)
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec)
    check_ray_cluster_spec(spec["rayClusterSpec"])


def test_rayjob_has_the_operator_manage_the_token():
    spec = load(CLUSTER / "kuberay" / "rayjob.yaml")["spec"]["rayClusterSpec"]
    # The operator creates the Secret and injects RAY_AUTH_TOKEN (secretKeyRef) into every
    # Ray container and the submitter, and authenticates its own job polling with it.
    assert spec["authOptions"]["mode"] == "token"
    for container in ray_containers(spec):
        env = env_of(container)
        assert "RAY_AUTH_TOKEN" not in env and "RAY_AUTH_MODE" not in env, "leave the token to the operator"


def test_manifests_use_the_image_built_from_cluster_dockerfile():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^FROM rayproject/ray:2\.\d+\.\d+-py311-gpu$", dockerfile, re.MULTILINE)
    assert '"/home/ray/raylanczos[jax,examples]" "jax[cuda12]"' in dockerfile
    images = set()
    for name in ("raycluster.yaml", "rayjob.yaml"):
        manifest = load(CLUSTER / "kuberay" / name)
        spec = manifest["spec"].get("rayClusterSpec", manifest["spec"])
        images |= {c["image"] for c in ray_containers(spec)}
    assert images == {"registry.example.com/raylanczos:0.1.0"}
    allowed = (CLUSTER / "Dockerfile.dockerignore").read_text()
    assert "!raylanczos/" in allowed and "!pyproject.toml" in allowed


# --- Secrets, shell scripts -----------------------------------------------------------

SCANNED = sorted(
    [p for p in (REPO / "cluster").rglob("*") if p.is_file()]
    + [p for p in (REPO / "jobs").rglob("*") if p.is_file()]
    + [REPO / "docs" / "clusters.md"]
)


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(REPO)))
def test_no_token_or_secret_is_written_in_the_repository(path):
    text = path.read_text()
    # Ray's tokens are 64 hex digits (secrets.token_hex(32)); keys and tokens are long runs.
    assert not re.search(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,}(?![0-9A-Za-z])", text), "a long hex string"
    assert not re.search(r"(?<![0-9A-Za-z/+])[A-Za-z0-9+/]{40,}={0,2}(?![0-9A-Za-z/+=])", text), "a long base64 string"
    # No literal value for a token variable, a Secret's data, or a cloud key.
    assert not re.search(r"RAY_AUTH_TOKEN\s*=\s*['\"]?[0-9A-Za-z]", text), "RAY_AUTH_TOKEN set to a literal"
    assert not re.search(r"name:\s*RAY_AUTH_TOKEN\s*\n\s*value\s*:", text), "RAY_AUTH_TOKEN set to a literal"
    assert not re.search(r"auth_token\s*:\s*['\"]?[0-9A-Za-z]", text), "an auth_token: value"
    assert not re.search(r"^\s*(stringData|data)\s*:", text, re.MULTILINE), "a Secret with data"
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|BEGIN [A-Z ]*PRIVATE KEY", text)
    if path.suffix in (".yaml", ".yml"):
        for document in yaml.safe_load_all(text):
            if isinstance(document, dict):
                assert document.get("kind") != "Secret", "create Secrets out of band, not in the repository"


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(REPO)))
def test_nothing_binds_the_dashboard_to_all_interfaces(path):
    text = path.read_text()
    if path.suffix != ".md":  # the guides name 0.0.0.0 in their warnings
        assert "0.0.0.0" not in text
    hosts = re.findall(r"dashboard-host[=:\s]\s*['\"]?([^\s'\"`]+)", text)
    assert all(host == "127.0.0.1" for host in hosts), hosts


@pytest.mark.parametrize("script", ["cluster/local-cluster.sh", "jobs/digits.sh"])
def test_shell_scripts_parse_and_keep_token_auth(script):
    path = REPO / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert "export RAY_AUTH_MODE=token" in text
    assert "ray stop" not in text.replace("`ray stop`", ""), "ray stop would end every Ray on the machine"
    usage = subprocess.run(["bash", str(path)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and usage.stderr.strip(), "without arguments: the usage on stderr, status 2"


def test_local_cluster_binds_to_loopback_and_gives_each_node_its_own_temp_dir():
    text = (CLUSTER / "local-cluster.sh").read_text()
    assert "--dashboard-host=127.0.0.1" in text
    assert '--temp-dir="$STATE_DIR/node-0"' in text and '--temp-dir="$STATE_DIR/node-$i"' in text
    assert "--num-gpus=1" in text  # stand-in GPUs: --gpus-per-worker 1 places as on a GPU cluster


@pytest.mark.parametrize("name", ["runtime-env.yaml", "runtime-env-pip.yaml", "runtime-env-pip-gpu.yaml"])
def test_runtime_envs_are_valid_ray_runtime_envs(name):
    """What `ray job submit --runtime-env` parses and checks on the client, before any upload."""
    from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
    from ray.runtime_env import RuntimeEnv

    path = REPO / "jobs" / name
    parsed = parse_runtime_env_args(runtime_env=str(path), working_dir=str(REPO))
    env = RuntimeEnv(**parsed)
    assert env["working_dir"] == str(REPO)
    assert all(isinstance(v, str) for v in env["env_vars"].values())
    assert env["env_vars"]["PYTHONUNBUFFERED"] == "1"  # progress lines reach the job log at once
    assert env["env_vars"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"  # workers may share a GPU
    assert {".git", "runs/"} <= set(env["excludes"])
    if "pip" in name:
        packages = env["pip"]["packages"]
        assert packages[0] == "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}[jax,examples]"
        assert ("jax[cuda12]" in packages) == name.endswith("-gpu.yaml")
    else:
        assert "pip" not in env and "conda" not in env

"""The Kubernetes launcher renders a vLLM Deployment and its Service: the YAML it writes is
parsed back and checked (structure, names, GPUs, probes, security context) and validated
against the Kubernetes OpenAPI schemas (kubernetes-validate ships them, no network).
Applying to a cluster is out of reach here (no cluster): the commands handed to kubectl
are checked with a stand-in kubectl that records its arguments."""

from __future__ import annotations

import json
import re
import stat
import uuid
from pathlib import Path

import pytest
import yaml

from deployments import launchers
from deployments.launchers.kubernetes import DEFAULT_IMAGE, resource_name
from inferia.errors import ServiceUnavailable, UpstreamError, ValidationError
from tests.conftest import require_or_skip

DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
SPEC = {
    "kind": "kubernetes",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "namespace": "models",
    "replicas": 2,
    "gpus": 2,
    "args": ["--max-model-len", 8192, "--tensor-parallel-size=2", "--enable-prefix-caching"],
    "resources": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"memory": "48Gi"}},
    "service_port": 8080,
}


@pytest.fixture
def launcher(settings, tmp_path):
    settings.INFERIA_LAUNCHERS = ["local", "kubernetes"]
    settings.INFERIA_LAUNCHER_DIR = tmp_path / "launchers"
    settings.INFERIA_KUBERNETES_NAMESPACES = ["inferia", "models"]
    settings.INFERIA_KUBERNETES_IMAGES = ["vllm/vllm-openai"]
    settings.INFERIA_KUBERNETES_APPLY = False
    settings.INFERIA_KUBERNETES_HF_TOKEN_SECRET = ""
    return launchers.get("kubernetes")


def start(launcher, spec=SPEC, deployment_id=None, org="acme", name="chat"):
    deployment_id = deployment_id or str(uuid.uuid4())
    state = launcher.start(deployment_id, spec, deployment_name=name, org_slug=org)
    return deployment_id, state


def load(state) -> list[dict]:
    return list(yaml.safe_load_all(Path(state["manifests"]).read_text()))


def test_start_writes_a_deployment_and_a_service_that_fit_together(launcher):
    deployment_id, state = start(launcher)
    name = resource_name("acme", "chat")
    assert state == {
        "kind": "kubernetes",
        "deployment_id": deployment_id,
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "base_url": f"http://{name}.models.svc.cluster.local:8080/v1",
        "name": name,
        "namespace": "models",
        "manifests": state["manifests"],
        "applied": False,
        "phase": "rendered",
        "detail": "INFERIA_KUBERNETES_APPLY is off",
        "started_at": state["started_at"],
    }
    path = Path(state["manifests"])
    assert path.name == f"{deployment_id}.yaml" and stat.S_IMODE(path.stat().st_mode) == 0o600

    deployment, service = load(state)
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    for manifest in (deployment, service):
        metadata = manifest["metadata"]
        assert metadata["name"] == name and metadata["namespace"] == "models"
        assert metadata["labels"]["inferia/org"] == "acme"
        assert metadata["labels"]["inferia/deployment"] == "chat"
        assert metadata["labels"]["inferia/deployment-id"] == deployment_id
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "inferia"
        assert metadata["annotations"]["inferia/model"] == "meta-llama/Llama-3.1-8B-Instruct"
        for value in metadata["labels"].values():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value

    spec = deployment["spec"]
    template_labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= template_labels.items()
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]

    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    (container,) = pod["containers"]
    assert container["image"] == DEFAULT_IMAGE
    assert container["command"] == ["vllm", "serve"]
    assert container["args"] == [
        "meta-llama/Llama-3.1-8B-Instruct",
        "--host",
        "0.0.0.0",  # noqa: S104
        "--port",
        "8000",
        "--max-model-len",
        "8192",
        "--tensor-parallel-size=2",
        "--enable-prefix-caching",
    ]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "32Gi"},
        "limits": {"memory": "48Gi", "nvidia.com/gpu": "2"},
    }
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    # The Service reaches the container's named port, which is the one vLLM listens on.
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 8000)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    # No secret value anywhere: environment entries are fixed names and values.
    assert {e["name"] for e in container["env"]} == {
        "HOME",
        "HF_HOME",
        "VLLM_NO_USAGE_STATS",
        "DO_NOT_TRACK",
    }


def test_the_rendered_yaml_is_valid_kubernetes(launcher):
    try:
        import kubernetes_validate
    except ImportError:
        require_or_skip("kubernetes-validate is not installed (pip install -e '.[test]')")
    _, state = start(launcher)
    gpu_less = dict(SPEC, gpus=0, resources={}, args=[])
    _, small = start(launcher, gpu_less, org="a" * 50, name="b" * 50)
    for manifest in load(state) + load(small):
        for version in ("1.29.0", kubernetes_validate.latest_version()):
            # strict: no field the schema does not know (a typo is an error).
            kubernetes_validate.validate(manifest, version, strict=True)
    # The validator does catch a broken manifest: the check above can fail.
    broken = load(state)[0]
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize(
    ("org", "name"),
    [("acme", "chat"), ("a" * 50, "b" * 50), ("9lives", "7b"), ("x", "y")],
)
def test_resource_names_are_dns_labels_of_at_most_63_characters(org, name):
    value = resource_name(org, name)
    assert len(value) <= 63 and DNS_1035.fullmatch(value), value


def test_orgs_whose_names_meet_at_a_hyphen_get_different_objects():
    # "a-b" + "c" and "a" + "b-c" both read "a-b-c": the digest keeps them apart.
    assert resource_name("a-b", "c") != resource_name("a", "b-c")
    assert resource_name("a-b", "c").startswith("a-b-c-")
    long = resource_name("o" * 50, "d" * 49 + "x")
    assert long != resource_name("o" * 50, "d" * 49 + "y")


def test_stop_removes_the_manifests_and_stop_twice_is_fine(launcher):
    deployment_id, state = start(launcher)
    assert launcher.status(state) == "running"
    assert "not applied" in launcher.describe(state)
    launcher.stop(deployment_id, state)
    assert not Path(state["manifests"]).exists()
    assert launcher.status(state) == "stopped"
    launcher.stop(deployment_id, state)
    launcher.stop(deployment_id, {})
    assert launcher.status(state) == "stopped"
    assert launcher.status({}) == "stopped"


def test_stop_deletes_only_its_own_file(launcher, tmp_path):
    # The path comes from the deployment id, never from the state (a database value).
    deployment_id, state = start(launcher)
    bystander = tmp_path / "keep.yaml"
    bystander.write_text("keep")
    launcher.stop(deployment_id, dict(state, manifests=str(bystander)))
    assert bystander.exists() and not Path(state["manifests"]).exists()


def test_start_without_names_reads_the_saved_deployment(launcher, db, cast):
    from deployments.models import Deployment

    row = Deployment.all_orgs.create(org=cast.acme, name="support-bot", config={})
    state = launcher.start(str(row.id), {"kind": "kubernetes", "model": "qwen/Qwen3-8B"})
    assert state["name"] == resource_name("acme", "support-bot")
    (deployment, _service) = load(state)
    assert deployment["metadata"]["labels"]["inferia/deployment"] == "support-bot"
    with pytest.raises(ValueError, match="not saved"):
        launcher.start(str(uuid.uuid4()), {"kind": "kubernetes", "model": "qwen/Qwen3-8B"})


def test_the_operators_hugging_face_secret_is_referenced_never_copied(launcher, settings):
    settings.INFERIA_KUBERNETES_HF_TOKEN_SECRET = "hf-token"
    _, state = start(launcher)
    (container,) = load(state)[0]["spec"]["template"]["spec"]["containers"]
    (token,) = [e for e in container["env"] if e["name"] == "HF_TOKEN"]
    assert token == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}},
    }


def test_the_defaults(launcher):
    assert launcher.validate({"kind": "kubernetes", "model": "m"}) == {
        "kind": "kubernetes",
        "model": "m",
        "image": DEFAULT_IMAGE,
        "namespace": "inferia",
        "replicas": 1,
        "gpus": 1,
        "args": [],
        "resources": {},
        "service_port": 8000,
    }
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", DEFAULT_IMAGE)  # pinned


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"model": ""}, "launcher.model", "Required: a model name"),
        ({"env": {"HF_TOKEN": "hf_x"}}, "launcher.env", "Unknown field."),
        ({"namespace": "kube-system"}, "launcher.namespace", "One of: inferia, models."),
        ({"image": "evil/miner:1.0"}, "launcher.image", "The image must come from"),
        ({"image": "vllm/vllm-openai"}, "launcher.image", "Pin a version"),
        ({"image": "vllm/vllm-openai:latest"}, "launcher.image", "Pin a version"),
        ({"image": "vllm/vllm-openai@sha256:abc"}, "launcher.image", "Not a valid"),
        ({"replicas": 0}, "launcher.replicas", "from 1 to 10"),
        ({"replicas": 11}, "launcher.replicas", "from 1 to 10"),
        ({"gpus": 9}, "launcher.gpus", "from 0 to 8"),
        ({"gpus": 1.5}, "launcher.gpus", "from 0 to 8"),
        ({"service_port": 0}, "launcher.service_port", "from 1 to 65535"),
        ({"args": "--dtype auto"}, "launcher.args", "A list"),
        ({"args": ["--trust-remote-code"]}, "launcher.args[0]", "not a vLLM flag"),
        ({"args": ["--api-key=sk-secret"]}, "launcher.args[0]", "not a vLLM flag"),
        ({"args": ["--port", "9999"]}, "launcher.args[0]", "not a vLLM flag"),
        ({"args": ["auto"]}, "launcher.args[0]", "A value must follow a flag"),
        ({"args": ["--dtype", "auto; rm -rf /"]}, "launcher.args[1]", "characters"),
        ({"args": ["--dtype=a b"]}, "launcher.args[0]", "characters"),
        (
            {"resources": {"limits": {"nvidia.com/gpu": "8"}}},
            "launcher.resources.limits.nvidia.com/gpu",
            "GPUs: launcher.gpus",
        ),
        (
            {"resources": {"requests": {"memory": "lots"}}},
            "launcher.resources.requests.memory",
            "A Kubernetes quantity",
        ),
        ({"resources": {"claims": []}}, "launcher.resources.claims", "Unknown field"),
    ],
)
def test_invalid_specs_name_the_field(launcher, change, field, message):
    spec = {**SPEC, **change}
    with pytest.raises(ValidationError) as caught:
        launcher.validate(spec)
    assert message in " ".join(caught.value.details[field]), caught.value.details
    with pytest.raises(ValidationError):
        start(launcher, spec)
    assert not list((Path(launchers.common.state_dir("kubernetes"))).iterdir())


def test_an_operator_may_allow_another_image(launcher, settings):
    settings.INFERIA_KUBERNETES_IMAGES = ["registry.example.com:5000/ml/vllm"]
    image = "registry.example.com:5000/ml/vllm@sha256:" + "a" * 64
    assert launcher.validate({"kind": "kubernetes", "model": "m", "image": image})["image"] == image
    with pytest.raises(ValidationError):
        launcher.validate({"kind": "kubernetes", "model": "m", "image": DEFAULT_IMAGE})


# --- applying: a stand-in kubectl (no cluster here) -------------------------------------


@pytest.fixture
def kubectl(settings, tmp_path):
    """A kubectl that records its arguments; ``get`` answers a Deployment with one ready
    replica, and a file named ``fail`` beside it makes every command fail."""
    calls = tmp_path / "kubectl-calls"
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{calls}"\n'
        f'if [ -e "{tmp_path}/fail" ]; then echo "error: connection refused" >&2; exit 1; fi\n'
        'if [ "$1" = get ]; then\n'
        '  echo \'{"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}\'\n'
        "fi\n"
    )
    script.chmod(0o755)
    settings.INFERIA_KUBERNETES_APPLY = True
    settings.INFERIA_KUBECTL = str(script)

    class Kubectl:
        def calls(self) -> list[str]:
            return calls.read_text().splitlines() if calls.exists() else []

        def fail(self) -> None:
            (tmp_path / "fail").write_text("")

    return Kubectl()


def test_applying_hands_the_manifests_to_kubectl_and_stop_deletes_by_name(launcher, kubectl):
    deployment_id, state = start(launcher)
    name = state["name"]
    assert state["applied"] is True and state["phase"] == "applied" and state["detail"] == ""
    assert kubectl.calls() == [f"apply -f {state['manifests']}"]
    assert launcher.status(state) == "running"
    assert launcher.describe(state) == "Applied to namespace models: 1/1 replicas ready."
    launcher.stop(deployment_id, state)
    assert kubectl.calls()[-1] == (
        f"delete deployment/{name} service/{name} --namespace models "
        "--ignore-not-found --wait=false"
    )
    assert not Path(state["manifests"]).exists()


def test_a_cluster_that_refuses_leaves_nothing_behind(launcher, kubectl):
    kubectl.fail()
    deployment_id = str(uuid.uuid4())
    with pytest.raises(UpstreamError):
        start(launcher, deployment_id=deployment_id)
    assert not (Path(launchers.common.state_dir("kubernetes")) / f"{deployment_id}.yaml").exists()


def test_a_delete_the_cluster_does_not_confirm_is_an_error(launcher, kubectl):
    deployment_id, state = start(launcher)
    kubectl.fail()
    with pytest.raises(ServiceUnavailable):
        launcher.stop(deployment_id, state)
    assert Path(state["manifests"]).exists()  # still there: the caller may try again
    assert launcher.status(state) == "failed"  # applied, and the cluster does not answer


def test_apply_on_without_kubectl_only_renders(launcher, settings, tmp_path):
    settings.INFERIA_KUBERNETES_APPLY = True
    settings.INFERIA_KUBECTL = str(tmp_path / "no-such-kubectl")
    _, state = start(launcher)
    assert state["applied"] is False and state["phase"] == "rendered"
    assert state["detail"] == f"{str(tmp_path / 'no-such-kubectl')!r} is not installed"
    assert launcher.status(state) == "running"
    assert json.dumps(state)  # the state is stored as JSON on the deployment

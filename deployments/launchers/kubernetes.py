"""The Kubernetes launcher: a vLLM Deployment and a ClusterIP Service per deployment.

Spec (validated strictly; every field but ``model`` optional)::

    kind: kubernetes
    model: meta-llama/Llama-3.1-8B-Instruct   # what vLLM serves (vllm serve <model>)
    image: vllm/vllm-openai:v0.33.0           # a repository of INFERIA_KUBERNETES_IMAGES, pinned
    namespace: inferia                        # one of INFERIA_KUBERNETES_NAMESPACES
    replicas: 1                               # 1..10
    gpus: 1                                   # nvidia.com/gpu per replica, 0..8
    args: [--max-model-len, "8192"]           # vLLM flags of ALLOWED_FLAGS only
    resources: {requests: {cpu: "4", memory: 32Gi}, limits: {memory: 48Gi}}
    service_port: 8000

``render`` turns a spec into the two manifests (plain dicts); ``start`` writes them as
YAML to ``INFERIA_LAUNCHER_DIR/kubernetes/<deployment id>.yaml`` and applies them with
``kubectl apply`` only when ``INFERIA_KUBERNETES_APPLY`` is on and kubectl is installed;
otherwise they are only rendered, for the operator (or a GitOps pipeline) to apply, and
the state says so (``"applied": false, "phase": "rendered"``). The endpoint the gateway
calls is the Service's cluster DNS name: ``http://<name>.<namespace>.svc.<domain>:<port>/v1``.

What a tenant may not steer: the image (an operator's allowlist of repositories), the
namespace (the operator's list), environment variables and secrets (the Hugging Face
token is the operator's Secret, ``INFERIA_KUBERNETES_HF_TOKEN_SECRET``), vLLM flags that
bind, authenticate, read server files or run a model repository's code. Resource names
carry a digest of org and deployment (``acme-chat-<16 hex>``): orgs sharing a namespace
never name the same object.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from deployments.launchers.common import (
    check_deployment_id,
    check_mapping,
    check_model,
    integer,
    raise_if,
    state_dir,
    unknown_fields,
)
from inferia.errors import ServiceUnavailable, UpstreamError

logger = logging.getLogger(__name__)

KIND = "kubernetes"
DEFAULT_IMAGE = "vllm/vllm-openai:v0.33.0"
CONTAINER_PORT = 8000
GPU_RESOURCE = "nvidia.com/gpu"
MAX_REPLICAS = 10
MAX_GPUS = 8
MAX_ARGS = 32
LABEL_PREFIX = "inferia"

# vLLM flags a spec may pass (``--flag value`` or ``--flag=value``). Left out on purpose:
# --host/--port/--model (ours), --api-key (a secret in a manifest), --trust-remote-code
# (runs the model repository's code), --chat-template, --download-dir, --allowed-local-media-path,
# --ssl-* and --root-path (server files and URLs).
ALLOWED_FLAGS = frozenset(
    {
        "--block-size",
        "--chat-template-content-format",
        "--dtype",
        "--enable-auto-tool-choice",
        "--enable-chunked-prefill",
        "--enable-prefix-caching",
        "--enforce-eager",
        "--generation-config",
        "--gpu-memory-utilization",
        "--kv-cache-dtype",
        "--max-logprobs",
        "--max-model-len",
        "--max-num-batched-tokens",
        "--max-num-seqs",
        "--no-enable-prefix-caching",
        "--pipeline-parallel-size",
        "--quantization",
        "--reasoning-parser",
        "--revision",
        "--seed",
        "--served-model-name",
        "--swap-space",
        "--tensor-parallel-size",
        "--tokenizer-mode",
        "--tool-call-parser",
        "--uvicorn-log-level",
    }
)
_FIELDS = {
    "kind",
    "model",
    "image",
    "namespace",
    "replicas",
    "gpus",
    "args",
    "resources",
    "service_port",
}
_RESOURCE_KEYS = ("cpu", "memory", "ephemeral-storage")
_DNS_LABEL_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1035 label, <= 63
_QUANTITY_RE = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?")
_REPOSITORY_RE = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_FLAG_RE = re.compile(r"--[a-z0-9][a-z0-9-]*")
_VALUE_RE = re.compile(r"-?[A-Za-z0-9._:/@+,=][A-Za-z0-9._:/@+,=-]{0,199}")


def resource_name(org_slug: str, deployment_name: str) -> str:
    """The Deployment's and the Service's name: readable, DNS-1035, at most 63 characters,
    unique per (org, deployment) even where ``a-b``/``c`` and ``a``/``b-c`` meet."""
    digest = hashlib.sha256(f"{org_slug}/{deployment_name}".encode()).hexdigest()[:16]
    readable = re.sub(r"[^a-z0-9-]", "-", f"{org_slug}-{deployment_name}".lower())
    if not readable[:1].isalpha():
        readable = "d-" + readable
    return f"{readable[:46].rstrip('-')}-{digest}"


def _split_image(image: str) -> tuple[str, str]:
    """(repository, tag or digest); the reference part empty when there is none."""
    if "@" in image:
        repository, _, digest = image.partition("@")
        return repository, digest
    head, _, last = image.rpartition("/")
    if ":" in last:
        name, _, tag = last.partition(":")
        return (f"{head}/{name}" if head else name), tag
    return image, ""


def _check_image(spec: dict[str, Any], errors: dict) -> str:
    image = spec.get("image", DEFAULT_IMAGE)
    if not isinstance(image, str) or len(image) > 255:
        errors["launcher.image"] = ["Must be an image reference (vllm/vllm-openai:<tag>)."]
        return DEFAULT_IMAGE
    repository, reference = _split_image(image)
    allowed = settings.INFERIA_KUBERNETES_IMAGES
    if _REPOSITORY_RE.fullmatch(repository) is None or repository not in allowed:
        errors["launcher.image"] = [f"The image must come from: {', '.join(allowed)}."]
    elif not reference or reference == "latest":
        errors["launcher.image"] = ["Pin a version: <repository>:<tag> (not latest) or @sha256:..."]
    elif (_DIGEST_RE if "@" in image else _TAG_RE).fullmatch(reference) is None:
        errors["launcher.image"] = ["Not a valid tag or digest."]
    return image


def _check_args(spec: dict[str, Any], errors: dict) -> list[str]:
    raw = spec.get("args", [])
    if not isinstance(raw, list) or len(raw) > MAX_ARGS:
        errors["launcher.args"] = [f"A list of at most {MAX_ARGS} strings."]
        return []
    # Numbers as YAML writes them (--max-model-len 8192) are the same as strings.
    args = [str(a) if isinstance(a, int | float) and not isinstance(a, bool) else a for a in raw]
    after_flag = False
    for index, item in enumerate(args):
        where = f"launcher.args[{index}]"
        if not isinstance(item, str):
            errors[where] = ["Must be a string."]
        elif item.startswith("--"):
            flag, has_value, value = item.partition("=")
            if _FLAG_RE.fullmatch(flag) is None or flag not in ALLOWED_FLAGS:
                errors[where] = [f"{flag!r} is not a vLLM flag a deployment may set."]
            elif has_value and _VALUE_RE.fullmatch(value) is None:
                errors[where] = ["The value holds characters a flag value may not."]
            after_flag = not has_value
            continue
        elif not after_flag:
            errors[where] = ["A value must follow a flag (--max-model-len 8192)."]
        elif _VALUE_RE.fullmatch(item) is None:
            errors[where] = ["The value holds characters a flag value may not."]
        after_flag = False
    return [str(a) for a in args]


def _check_resources(spec: dict[str, Any], errors: dict) -> dict[str, dict[str, str]]:
    resources = spec.get("resources", {})
    if not isinstance(resources, dict):
        errors["launcher.resources"] = ["A mapping of requests and limits."]
        return {}
    for key in sorted(map(str, set(resources) - {"requests", "limits"})):
        errors[f"launcher.resources.{key}"] = ["Unknown field: requests or limits."]
    normalized: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        values = resources.get(part, {})
        if not isinstance(values, dict):
            errors[f"launcher.resources.{part}"] = ["A mapping: cpu, memory, ephemeral-storage."]
            continue
        for key, value in values.items():
            where = f"launcher.resources.{part}.{key}"
            if key not in _RESOURCE_KEYS:
                errors[where] = [f"One of: {', '.join(_RESOURCE_KEYS)} (GPUs: launcher.gpus)."]
            elif isinstance(value, bool) or not isinstance(value, str | int):
                errors[where] = ['A Kubernetes quantity ("4", "500m", "32Gi").']
            elif _QUANTITY_RE.fullmatch(str(value)) is None:
                errors[where] = ['A Kubernetes quantity ("4", "500m", "32Gi").']
            else:
                normalized.setdefault(part, {})[key] = str(value)
    return normalized


class KubernetesLauncher:
    kind = KIND

    def validate(self, spec: dict[str, Any]) -> dict[str, Any]:
        spec = check_mapping(spec)
        errors: dict[str, list[str]] = {}
        unknown_fields(spec, _FIELDS, errors)
        if spec.get("kind", KIND) != KIND:
            errors["launcher.kind"] = [f"Must be {KIND!r}."]
        model = check_model(spec, errors)
        image = _check_image(spec, errors)
        namespaces = settings.INFERIA_KUBERNETES_NAMESPACES
        namespace = spec.get("namespace", namespaces[0])
        if namespace not in namespaces or _DNS_LABEL_RE.fullmatch(str(namespace)) is None:
            errors["launcher.namespace"] = [f"One of: {', '.join(namespaces)}."]
        replicas = integer(spec, "replicas", errors, low=1, high=MAX_REPLICAS, default=1)
        gpus = integer(spec, "gpus", errors, low=0, high=MAX_GPUS, default=1)
        service_port = integer(spec, "service_port", errors, low=1, high=65535, default=8000)
        args = _check_args(spec, errors)
        resources = _check_resources(spec, errors)
        raise_if(errors)
        return {
            "kind": KIND,
            "model": model,
            "image": image,
            "namespace": namespace,
            "replicas": replicas,
            "gpus": gpus,
            "args": args,
            "resources": resources,
            "service_port": service_port,
        }

    def render(
        self,
        deployment_name: str,
        org_slug: str,
        spec: dict[str, Any],
        *,
        deployment_id: str = "",
    ) -> list[dict[str, Any]]:
        """The vLLM Deployment and its Service, as dicts (``yaml.safe_dump_all`` them)."""
        spec = self.validate(spec)
        name = resource_name(org_slug, deployment_name)
        selector = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name}
        labels = {
            **selector,
            "app.kubernetes.io/component": "model-server",
            "app.kubernetes.io/managed-by": "inferia",
            f"{LABEL_PREFIX}/org": org_slug,
            f"{LABEL_PREFIX}/deployment": deployment_name,
        }
        if deployment_id:
            labels[f"{LABEL_PREFIX}/deployment-id"] = check_deployment_id(deployment_id)
        # A model name may hold '/' (no label value may): an annotation carries it.
        annotations = {f"{LABEL_PREFIX}/model": spec["model"]}
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": spec["namespace"],
            "labels": labels,
            "annotations": annotations,
        }
        requests = dict(spec["resources"].get("requests", {}))
        limits = dict(spec["resources"].get("limits", {}))
        if spec["gpus"]:
            limits[GPU_RESOURCE] = str(spec["gpus"])  # requests default to the limits
        resources: dict[str, Any] = {}
        if requests:
            resources["requests"] = requests
        if limits:
            resources["limits"] = limits
        env: list[dict[str, Any]] = [
            # The image runs as root by default; as 1000, caches go to a writable volume.
            {"name": "HOME", "value": "/cache"},
            {"name": "HF_HOME", "value": "/cache/huggingface"},
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            {"name": "DO_NOT_TRACK", "value": "1"},
        ]
        if settings.INFERIA_KUBERNETES_HF_TOKEN_SECRET:
            env.append(
                {
                    "name": "HF_TOKEN",
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": settings.INFERIA_KUBERNETES_HF_TOKEN_SECRET,
                            "key": "token",
                            "optional": True,
                        }
                    },
                }
            )
        probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
        container = {
            "name": "vllm",
            "image": spec["image"],
            "imagePullPolicy": "IfNotPresent",
            # `vllm serve <model>`: recent vLLM refuses --model with `serve`.
            "command": ["vllm", "serve"],
            "args": [
                spec["model"],
                "--host",
                "0.0.0.0",  # noqa: S104  (inside the pod: the Service reaches it)
                "--port",
                str(CONTAINER_PORT),
                *spec["args"],
            ],
            "env": env,
            "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
            "resources": resources,
            # Downloading and loading weights takes minutes: up to 30 before liveness counts.
            "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 180},
            "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
            "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 3},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": True,
                # torch.compile and Triton write caches and kernels beside the code.
                "readOnlyRootFilesystem": False,
            },
            "volumeMounts": [
                {"name": "cache", "mountPath": "/cache"},
                {"name": "shm", "mountPath": "/dev/shm"},  # noqa: S108  (in the pod)
            ],
        }
        pod_spec: dict[str, Any] = {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 60,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                # Tensor parallelism shares memory between workers through /dev/shm.
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
            ],
        }
        if spec["gpus"]:
            pod_spec["tolerations"] = [
                {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
            ]
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                "replicas": spec["replicas"],
                "revisionHistoryLimit": 3,
                # GPUs are scarce: replace a pod rather than wait for a spare GPU.
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
                },
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": pod_spec,
                },
            },
        }
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [
                    {
                        "name": "http",
                        "port": spec["service_port"],
                        "targetPort": "http",
                        "protocol": "TCP",
                    }
                ],
            },
        }
        # Separate copies: a YAML dump would otherwise write anchors and aliases.
        return json.loads(json.dumps([deployment, service]))

    # --- the launcher protocol ------------------------------------------------------------

    def start(
        self,
        deployment_id: str,
        spec: dict[str, Any],
        *,
        deployment_name: str = "",
        org_slug: str = "",
    ) -> dict[str, Any]:
        deployment_id = check_deployment_id(deployment_id)
        spec = self.validate(spec)
        if not (deployment_name and org_slug):
            deployment_name, org_slug = _names_of(deployment_id)
        manifests = self.render(deployment_name, org_slug, spec, deployment_id=deployment_id)
        name, namespace = manifests[0]["metadata"]["name"], spec["namespace"]
        path = _manifest_path(deployment_id)
        header = (
            f"# Rendered by Inferia: deployment {deployment_name!r} of org {org_slug!r} "
            f"({deployment_id}).\n# Apply: kubectl apply -f {path.name}\n"
        )
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(header + yaml.safe_dump_all(manifests, sort_keys=False))
        os.replace(temporary, path)
        kubectl = _kubectl()
        detail = "INFERIA_KUBERNETES_APPLY is off" if kubectl is None else ""
        if settings.INFERIA_KUBERNETES_APPLY and kubectl is None:
            detail = f"{settings.INFERIA_KUBECTL!r} is not installed"
        applied = False
        if kubectl is not None:
            result = _run(kubectl, "apply", "-f", str(path))
            if result.returncode != 0:
                path.unlink(missing_ok=True)
                logger.error(
                    "kubernetes launcher: kubectl apply failed for deployment %s: %s",
                    deployment_id,
                    result.stderr.strip()[-2000:],
                )
                raise UpstreamError("The cluster refused the deployment's manifests")
            applied = True
        domain = settings.INFERIA_KUBERNETES_CLUSTER_DOMAIN
        return {
            "kind": KIND,
            "deployment_id": deployment_id,
            "model": spec["model"],
            "base_url": f"http://{name}.{namespace}.svc.{domain}:{spec['service_port']}/v1",
            "name": name,
            "namespace": namespace,
            "manifests": str(path),
            "applied": applied,
            "phase": "applied" if applied else "rendered",
            "detail": detail,
            "started_at": datetime.now(UTC).isoformat(),
        }

    def stop(self, deployment_id: str, state: dict[str, Any]) -> None:
        deployment_id = check_deployment_id(deployment_id)
        state = state or {}
        name, namespace = state.get("name"), state.get("namespace")
        kubectl = _kubectl()
        if state.get("applied") and kubectl is None:
            logger.warning(
                "kubernetes launcher: deployment %s was applied but kubectl is not available: "
                "delete deployment/%s and service/%s in %s by hand",
                deployment_id,
                name,
                name,
                namespace,
            )
        elif state.get("applied") and _names_ok(name, namespace):
            result = _run(
                kubectl,  # type: ignore[arg-type]
                "delete",
                f"deployment/{name}",
                f"service/{name}",
                "--namespace",
                str(namespace),
                "--ignore-not-found",
                "--wait=false",
            )
            if result.returncode != 0:
                logger.error(
                    "kubernetes launcher: kubectl delete failed for deployment %s: %s",
                    deployment_id,
                    result.stderr.strip()[-2000:],
                )
                raise ServiceUnavailable("The cluster did not confirm the deletion; try again")
        # Derived from the id, never from a path in the state.
        _manifest_path(deployment_id).unlink(missing_ok=True)

    def status(self, state: dict[str, Any]) -> str:
        """``stopped`` once the manifests are gone; ``running`` while they exist (rendered:
        the state's ``phase`` says they are not applied; applied: the cluster has the
        Deployment); ``failed`` when applied and the cluster no longer has it."""
        deployment_id = (state or {}).get("deployment_id")
        try:
            if not deployment_id or not _manifest_path(str(deployment_id)).exists():
                return "stopped"
        except ValueError:
            return "stopped"
        if not state.get("applied"):
            return "running"
        return "running" if _cluster_deployment(state) is not None else "failed"

    def describe(self, state: dict[str, Any]) -> str:
        status = self.status(state)
        if status == "stopped":
            return "Stopped: no manifests."
        if not state.get("applied"):
            why = state.get("detail") or "not applied"
            return (
                f"Manifests rendered on the server, not applied ({why}): an operator applies "
                f"them with kubectl apply -f {Path(str(state.get('manifests'))).name}."
            )
        found = _cluster_deployment(state)
        if found is None:
            return "Applied, but the cluster has no such Deployment (or did not answer)."
        ready = (found.get("status") or {}).get("readyReplicas", 0)
        wanted = (found.get("spec") or {}).get("replicas", 0)
        return f"Applied to namespace {state.get('namespace')}: {ready}/{wanted} replicas ready."


def _manifest_path(deployment_id: str) -> Path:
    return state_dir(KIND) / f"{check_deployment_id(deployment_id)}.yaml"


def _names_of(deployment_id: str) -> tuple[str, str]:
    """The deployment's name and org slug, when the caller did not pass them."""
    from deployments.models import Deployment

    # all_orgs: a launcher runs outside any org scope (a task, a service's on_commit).
    row = Deployment.all_orgs.select_related("org").filter(id=deployment_id).first()
    if row is None:
        raise ValueError(
            f"deployment {deployment_id} is not saved: pass deployment_name and org_slug"
        )
    return row.name, row.org.slug


def _names_ok(name: Any, namespace: Any) -> bool:
    return all(isinstance(v, str) and _DNS_LABEL_RE.fullmatch(v) for v in (name, namespace))


def _kubectl() -> str | None:
    """kubectl's path when applying is on and it is installed, else None."""
    if not settings.INFERIA_KUBERNETES_APPLY:
        return None
    return shutil.which(settings.INFERIA_KUBECTL)


def _run(kubectl: str, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(  # noqa: S603  (fixed arguments, names validated as DNS labels)
            [kubectl, *args],
            capture_output=True,
            text=True,
            timeout=settings.INFERIA_KUBECTL_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.error("kubernetes launcher: kubectl %s: %s", args[0], exc)
        return subprocess.CompletedProcess([kubectl, *args], 1, "", str(exc))


def _cluster_deployment(state: dict[str, Any]) -> dict[str, Any] | None:
    kubectl = _kubectl()
    name, namespace = state.get("name"), state.get("namespace")
    if kubectl is None or not _names_ok(name, namespace):
        return None
    result = _run(kubectl, "get", f"deployment/{name}", "--namespace", str(namespace), "-o", "json")
    if result.returncode != 0:
        return None
    try:
        found = json.loads(result.stdout)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None

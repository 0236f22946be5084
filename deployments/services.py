"""Every state change of deployments: create, update (a new version), rollback, status,
delete, and the all-or-nothing import of a ``deployments:`` document.

The rules, in one place, for the API, the dashboard and the YAML imports:

- the routing document passes ``deployments.config.parse``; then every ``account``
  target names a provider account of *this* org (another org's, or none: NOT_FOUND
  naming the field, ``targets[0].account``) with that model enabled (else 400);
- the editor may use every target's model FQN by the access rules (else
  PERMISSION_DENIED naming the target): nobody routes a deployment, and so everyone
  it grants, to a model they may not call themselves;
- a ``launched`` target needs the deployment's launcher spec, which its launcher
  validates (``launcher.<field>``);
- each change is one transaction with its audit record (``deployment:create``,
  ``deployment:update``, ``deployment:delete``; before/after config and version) and
  bumps the org's epoch on commit, so every gateway process rebuilds its principals.

Launchers run outside the row's transaction (starting a process or asking a cluster
takes a while and must not hold the database): a launched deployment is ``creating``
until its launcher answers, then ``ready`` with the launcher's state; when the launcher
fails, the row goes and the caller gets UPSTREAM_ERROR (nothing half-made). Deleting
stops routing first (``stopped``, epoch bumped), then stops the launcher, then deletes.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from audit import services as audit
from deployments import config as routing
from deployments import documents, launchers
from deployments.models import Deployment, DeploymentStatus, DeploymentVersion
from inferia import store
from inferia.errors import (
    Conflict,
    InferiaError,
    NotFound,
    PermissionDenied,
    UpstreamError,
    ValidationError,
)
from inferia.request_meta import RequestMeta
from keys import access_rules, names
from keys.models import ProviderAccount
from orgs.access import Access

logger = logging.getLogger("inferia.deployments")

NAME_HELP = "1-50 lowercase letters, digits and hyphens, not starting or ending with a hyphen."
# What a user may set; ``creating`` belongs to the launch, ``degraded`` to health checks.
SETTABLE_STATUSES = (DeploymentStatus.READY, DeploymentStatus.STOPPED)
REASON_MAX_LENGTH = 500


def _prefixed(details: Any, where: str) -> dict[str, list[str]]:
    if not isinstance(details, dict):
        return {where.rstrip(".") or "config": [str(details)]}
    return {f"{where}{key}": value for key, value in details.items()}


def _reason(exc: BaseException) -> str:
    """A launcher's failure in one line for the caller and the audit record."""
    text = exc.message if isinstance(exc, InferiaError) else f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split())[:300]


def _record(
    access: Access,
    action: str,
    deployment: Deployment,
    meta: RequestMeta | None,
    *,
    outcome: str = "success",
    **data: Any,
) -> None:
    audit.record(
        action=action,
        outcome=outcome,
        org=access.org,
        actor=access.user,
        actor_label=access.actor_label,
        target=deployment,
        meta=meta,
        data={"name": deployment.name, **data},
    )


# --- validation -------------------------------------------------------------------------------


def _validate_name(name: Any, where: str = "") -> str:
    if not isinstance(name, str) or names.ACCOUNT_RE.fullmatch(name) is None:
        raise ValidationError("Invalid deployment name", details={f"{where}name": [NAME_HELP]})
    return name


def _validate_description(description: Any, where: str = "") -> str:
    if not isinstance(description, str) or len(description) > documents.DESCRIPTION_MAX_LENGTH:
        raise ValidationError(
            "Invalid description",
            details={
                f"{where}description": [
                    f"Text of at most {documents.DESCRIPTION_MAX_LENGTH} characters."
                ]
            },
        )
    return description


def launcher_spec_validate(spec: dict[str, Any] | None, *, where: str = "") -> dict[str, Any]:
    """The normalized launcher spec (``{}`` for none); its launcher's refusal names the
    field (``launcher.kind``, ``launcher.model``) under ``where``."""
    if not spec:
        return {}
    if not isinstance(spec, dict):
        raise ValidationError(
            "Invalid launcher spec",
            details={f"{where}launcher": ["A mapping with a 'kind' (or leave it out)."]},
        )
    kind = spec.get("kind")
    try:
        launcher = launchers.get(kind if isinstance(kind, str) else "")
        normalized = launcher.validate(dict(spec))
    except ValidationError as exc:
        raise ValidationError(
            "The launcher spec is invalid; nothing was changed",
            details=_prefixed(exc.details, where),
        ) from exc
    return {**normalized, "kind": launcher.kind}


def _parse(document: Any, where: str) -> routing.RoutingConfig:
    try:
        return routing.parse(document)
    except ValidationError as exc:
        raise ValidationError(exc.message, details=_prefixed(exc.details, where)) from exc


def _check_in_org(
    access: Access, parsed: routing.RoutingConfig, *, launcher: dict[str, Any], where: str
) -> None:
    wanted = {t.account for t in parsed.targets if not t.launched}
    # The scoped manager: another org's account of the same name is not found.
    accounts = {a.name: a for a in ProviderAccount.objects.filter(name__in=wanted)}
    errors: dict[str, list[str]] = {}
    for index, target in enumerate(parsed.targets):
        path = f"{where}targets[{index}]."
        if target.launched:
            if not launcher:
                errors[f"{path}launched"] = [
                    "A launched target needs the deployment's launcher spec (launcher: {kind: ...})."
                ]
            continue
        account = accounts.get(target.account)
        if account is None:
            raise NotFound(
                f"No provider account named {target.account!r} in this organization",
                details={f"{path}account": ["No such provider account."]},
            )
        if target.model not in account.model_names:
            errors[f"{path}model"] = [
                f"{target.model!r} is not an enabled model of {account.name}."
            ]
    if errors:
        raise ValidationError(
            "The routing configuration is invalid; nothing was changed", details=errors
        )
    decided: dict[str, bool] = {}
    for index, target in enumerate(parsed.targets):
        if target.launched:
            continue
        if target.fqn not in decided:
            decided[target.fqn] = access_rules.may_use_model(access, target.fqn)
        if not decided[target.fqn]:
            raise PermissionDenied(
                f"You may not use {target.fqn}, so you cannot route a deployment to it",
                details={
                    f"{where}targets[{index}].model": [f"{target.fqn} is not granted to you."]
                },
            )


def config_validate(
    access: Access, document: Any, *, launcher: dict[str, Any], where: str = ""
) -> dict[str, Any]:
    """The canonical routing document of ``document`` for this org and this editor.

    Raises VALIDATION_ERROR (the document, a model not enabled, a launched target
    without a launcher), NOT_FOUND (an account that is not this org's) and
    PERMISSION_DENIED (a target model the editor may not use); every error names its
    field under ``where`` (``deployments[1].targets[0].weight``).
    """
    parsed = _parse(document, where)
    _check_in_org(access, parsed, launcher=launcher, where=where)
    return routing.to_document(parsed)


# --- rows: the steps every path shares (run inside the caller's transaction) ------------------


def _create_row(
    access: Access,
    *,
    name: str,
    description: str,
    document: dict[str, Any],
    spec: dict[str, Any],
    comment: str,
    meta: RequestMeta | None,
    source: str,
) -> Deployment:
    if Deployment.objects.filter(name=name).exists():
        raise Conflict("A deployment with this name exists", details={"name": ["Already taken."]})
    try:
        with transaction.atomic():
            deployment = Deployment.objects.create(
                org=access.org,
                name=name,
                description=description,
                status=DeploymentStatus.CREATING if spec else DeploymentStatus.READY,
                config=document,
                version=1,
                launcher=spec,
                created_by=access.user,
            )
    except IntegrityError as exc:  # created by someone else meanwhile
        raise Conflict(
            "A deployment with this name exists", details={"name": ["Already taken."]}
        ) from exc
    DeploymentVersion.objects.create(
        org=access.org,
        deployment=deployment,
        number=1,
        config=document,
        comment=comment,
        created_by=access.user,
    )
    _record(
        access,
        "deployment:create",
        deployment,
        meta,
        op="create",
        source=source,
        status=deployment.status,
        launcher=spec.get("kind"),
        before=None,
        after={"version": 1, "config": document},
    )
    store.bump_epoch(access.org.pk)
    return deployment


def _locked(deployment: Deployment) -> Deployment:
    """The row again, locked for this transaction (deleted meanwhile: NOT_FOUND)."""
    locked = Deployment.objects.select_for_update().filter(pk=deployment.pk).first()
    if locked is None:
        raise NotFound("Deployment not found")
    return locked


def _update_row(
    access: Access,
    deployment: Deployment,
    *,
    document: dict[str, Any] | None,
    description: str | None,
    comment: str,
    meta: RequestMeta | None,
    source: str,
    rolled_back_from: int | None = None,
) -> Deployment:
    """A new version when the routing changes (always for a rollback); no change, no record."""
    before = {"version": deployment.version, "config": deployment.config}
    fields: list[str] = []
    if description is not None and description != deployment.description:
        deployment.description = description
        fields.append("description")
    if document is not None and (document != deployment.config or rolled_back_from is not None):
        number = deployment.version + 1
        try:
            with transaction.atomic():
                DeploymentVersion.objects.create(
                    org=access.org,
                    deployment=deployment,
                    number=number,
                    config=document,
                    comment=comment,
                    rolled_back_from=rolled_back_from,
                    created_by=access.user,
                )
        except IntegrityError as exc:  # another change took this number (no row locks in SQLite)
            raise Conflict(
                f"Deployment {deployment.name} changed meanwhile; reload it and try again"
            ) from exc
        deployment.config = document
        deployment.version = number
        fields += ["config", "version"]
    if not fields:
        return deployment
    deployment.save(update_fields=[*fields, "updated_at"])
    _record(
        access,
        "deployment:update",
        deployment,
        meta,
        op="rollback" if rolled_back_from is not None else "update",
        source=source,
        changed=fields,
        rolled_back_from=rolled_back_from,
        before=before,
        after={"version": deployment.version, "config": deployment.config},
    )
    store.bump_epoch(access.org.pk)
    return deployment


def _delete_row(access: Access, deployment: Deployment, meta: RequestMeta | None, source: str):
    _record(
        access,
        "deployment:delete",
        deployment,
        meta,
        op="delete",
        source=source,
        launcher=deployment.launcher.get("kind"),
        before={"version": deployment.version, "config": deployment.config},
        after=None,
    )
    deployment.delete()
    store.bump_epoch(access.org.pk)


def _start(deployment: Deployment) -> dict[str, Any]:
    """Start what the deployment's launcher spec asks for; its state, or UPSTREAM_ERROR."""
    kind = str(deployment.launcher.get("kind", ""))
    try:
        state = launchers.get(kind).start(str(deployment.pk), dict(deployment.launcher))
    except Exception as exc:  # a process, a cluster: any failure is the launcher's answer
        reason = _reason(exc)
        logger.warning("launcher %s failed to start deployment %s: %s", kind, deployment.pk, reason)
        raise UpstreamError(
            f"The {kind} launcher could not start deployment {deployment.name}: {reason}. "
            "Nothing was created.",
            details={"launcher": [reason]},
        ) from exc
    return dict(state) if isinstance(state, dict) else {}


def _stop(deployment_id: str, kind: str, state: dict[str, Any]) -> None:
    launchers.get(kind).stop(deployment_id, dict(state))


def _stop_quietly(deployment_id: str, kind: str, state: dict[str, Any]) -> None:
    """Undo a start whose transaction did not commit, or stop after a committed delete."""
    try:
        _stop(deployment_id, kind, state)
    except Exception as exc:  # logged: nothing else can be done about it here
        logger.error("launcher %s failed to stop %s: %s", kind, deployment_id, _reason(exc))


def _mark_launched(
    access: Access, deployment: Deployment, state: dict[str, Any], meta: RequestMeta | None
) -> Deployment:
    deployment.launcher_state = state
    deployment.status = DeploymentStatus.READY
    deployment.status_reason = ""
    deployment.save(update_fields=["launcher_state", "status", "status_reason", "updated_at"])
    _record(
        access,
        "deployment:create",
        deployment,
        meta,
        op="launch",
        launcher=deployment.launcher.get("kind"),
        status=deployment.status,
        state=state,
    )
    store.bump_epoch(access.org.pk)
    return deployment


# --- one deployment ---------------------------------------------------------------------------


def deployment_create(
    *,
    access: Access,
    name: str,
    config: Any,
    description: str = "",
    launcher: dict[str, Any] | None = None,
    comment: str = "",
    meta: RequestMeta | None = None,
    source: str = "api",
) -> Deployment:
    """Create a deployment (version 1) and, with a launcher spec, start its endpoint.

    Needs ``deployment:create``. Raises VALIDATION_ERROR, NOT_FOUND, PERMISSION_DENIED
    (``config_validate``), CONFLICT (the name is taken) and UPSTREAM_ERROR when the
    launcher fails: the row is then removed again (recorded as a failed create).
    """
    access.require("deployment:create")
    _validate_name(name)
    _validate_description(description)
    spec = launcher_spec_validate(launcher)
    document = config_validate(access, config, launcher=spec)
    with transaction.atomic():
        deployment = _create_row(
            access,
            name=name,
            description=description,
            document=document,
            spec=spec,
            comment=comment,
            meta=meta,
            source=source,
        )
    if not spec:
        return deployment
    try:
        state = _start(deployment)
    except UpstreamError as exc:
        with transaction.atomic():
            _record(
                access,
                "deployment:create",
                deployment,
                meta,
                outcome="failure",
                op="launch",
                launcher=spec.get("kind"),
                status=DeploymentStatus.STOPPED,
                reason=(exc.details or {}).get("launcher", [""])[0],
            )
            deployment.delete()
            store.bump_epoch(access.org.pk)
        raise
    try:
        with transaction.atomic():
            return _mark_launched(access, deployment, state, meta)
    except BaseException:
        _stop_quietly(str(deployment.pk), spec["kind"], state)
        raise


def deployment_update(
    *,
    access: Access,
    deployment: Deployment,
    config: Any = None,
    description: str | None = None,
    comment: str = "",
    meta: RequestMeta | None = None,
    source: str = "api",
) -> Deployment:
    """Change the description and/or the routing (a new version, ``version`` + 1).

    Needs ``deployment:update``; the routing is checked as at creation
    (``config_validate``). The launcher spec does not change (delete and create anew).
    """
    access.require("deployment:update")
    if description is not None:
        _validate_description(description)
    document = (
        config_validate(access, config, launcher=deployment.launcher)
        if config is not None
        else None
    )
    with transaction.atomic():
        locked = _locked(deployment)
        return _update_row(
            access,
            locked,
            document=document,
            description=description,
            comment=comment,
            meta=meta,
            source=source,
        )


def deployment_rollback(
    *,
    access: Access,
    deployment: Deployment,
    version: int,
    comment: str = "",
    meta: RequestMeta | None = None,
) -> Deployment:
    """A new version copying version ``version``'s routing (``rolled_back_from`` set).

    Needs ``deployment:update``. The old routing is checked again as if written now (its
    account may be gone, the editor may not use its models). VALIDATION_ERROR for an
    unknown version, CONFLICT for the current one.
    """
    access.require("deployment:update")
    old = DeploymentVersion.objects.filter(deployment=deployment, number=version).first()
    if old is None:
        raise ValidationError(
            "No such version",
            details={"version": [f"Deployment {deployment.name} has no version {version}."]},
        )
    if version == deployment.version:
        raise Conflict(f"Version {version} is the current version of {deployment.name}")
    document = config_validate(access, old.config, launcher=deployment.launcher)
    with transaction.atomic():
        locked = _locked(deployment)
        return _update_row(
            access,
            locked,
            document=document,
            description=None,
            comment=comment or f"Rollback to version {version}",
            meta=meta,
            source="api",
            rolled_back_from=version,
        )


def deployment_set_status(
    *,
    access: Access,
    deployment: Deployment,
    status: str,
    reason: str = "",
    meta: RequestMeta | None = None,
) -> Deployment:
    """Pause (``stopped``: the gateway serves no new call) or resume (``ready``).

    Needs ``deployment:update``. A launched endpoint keeps running while paused; only
    deleting stops it. VALIDATION_ERROR for another status, CONFLICT while creating.
    """
    access.require("deployment:update")
    if status not in SETTABLE_STATUSES:
        raise ValidationError(
            "Invalid status",
            details={"status": [f"One of: {', '.join(s.value for s in SETTABLE_STATUSES)}."]},
        )
    with transaction.atomic():
        locked = _locked(deployment)
        if locked.status == DeploymentStatus.CREATING:
            raise Conflict(f"Deployment {locked.name} is still being created")
        if locked.status == status and locked.status_reason == reason:
            return locked
        before = locked.status
        locked.status = status
        locked.status_reason = reason[:REASON_MAX_LENGTH]
        locked.save(update_fields=["status", "status_reason", "updated_at"])
        _record(
            access,
            "deployment:update",
            locked,
            meta,
            op="status",
            before={"status": before},
            after={"status": status, "reason": locked.status_reason},
        )
        store.bump_epoch(access.org.pk)
    return locked


def deployment_delete(
    *, access: Access, deployment: Deployment, meta: RequestMeta | None = None
) -> None:
    """Stop routing to the deployment, stop what its launcher started, delete it.

    Needs ``deployment:delete``. First ``stopped`` (the epoch bump tells every gateway
    process: no new call), then the launcher's ``stop``, then the row goes with its
    versions. If the launcher cannot stop, the deployment stays ``stopped`` with the
    reason and the caller gets UPSTREAM_ERROR (delete again to retry). Access rules
    naming it stay as they are: they grant nothing once it is gone.
    """
    access.require("deployment:delete")
    with transaction.atomic():
        locked = _locked(deployment)
        if locked.status != DeploymentStatus.STOPPED or locked.status_reason != "Deleting":
            locked.status = DeploymentStatus.STOPPED
            locked.status_reason = "Deleting"
            locked.save(update_fields=["status", "status_reason", "updated_at"])
            store.bump_epoch(access.org.pk)
    if locked.launcher:
        kind = str(locked.launcher.get("kind", ""))
        try:
            _stop(str(locked.pk), kind, locked.launcher_state)
        except Exception as exc:  # any failure is the launcher's answer: report it, keep the row
            reason = _reason(exc)
            with transaction.atomic():
                locked.status_reason = f"Stopping failed: {reason}"[:REASON_MAX_LENGTH]
                locked.save(update_fields=["status_reason", "updated_at"])
                _record(
                    access,
                    "deployment:delete",
                    locked,
                    meta,
                    outcome="failure",
                    op="delete",
                    launcher=kind,
                    reason=reason,
                )
            raise UpstreamError(
                f"The {kind} launcher could not stop deployment {locked.name}: {reason}. "
                "It stays stopped; delete it again to retry.",
                details={"launcher": [reason]},
            ) from exc
    with transaction.atomic():
        _delete_row(access, locked, meta, "api")


# --- a whole document: the ``deployments:`` list, all or nothing ------------------------------


@dataclass
class Plan:
    """What an import changes, validated; ``deployments_apply`` carries it out."""

    creates: list[tuple[documents.Entry, dict[str, Any], dict[str, Any]]] = field(
        default_factory=list
    )
    # (deployment, new description or None, new routing or None)
    updates: list[tuple[Deployment, str | None, dict[str, Any] | None]] = field(
        default_factory=list
    )
    deletes: list[Deployment] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changes(self) -> dict[str, list[str]]:
        return {
            "created": [entry.name for entry, _, _ in self.creates],
            "updated": [d.name for d, _, _ in self.updates],
            "deleted": [d.name for d in self.deletes],
        }


def deployments_plan(*, access: Access, entries: Any, where: str = "deployments") -> Plan:
    """Validate a whole ``deployments:`` list against the org and the editor; write nothing.

    Deployments of the org missing from the list are to be deleted, new names created,
    the others updated where they differ. Every field error of every entry is reported
    at once, by path (``deployments[1].targets[0].weight``); NOT_FOUND and
    PERMISSION_DENIED as in ``config_validate``. Then ``deployment:create``,
    ``deployment:update`` and ``deployment:delete`` are required for what changes.
    """
    if not isinstance(entries, list):
        raise ValidationError(
            "Expected a list of deployments", details={where: ["A list of deployments."]}
        )
    errors: dict[str, list[str]] = {}
    existing = {d.name: d for d in Deployment.objects.all()}
    seen: set[str] = set()
    plan = Plan()
    for index, raw in enumerate(entries):
        at = f"{where}[{index}]"
        entry = documents.split_entry(raw, at)
        entry_errors = dict(entry.errors)
        if entry.name:
            if names.ACCOUNT_RE.fullmatch(entry.name) is None:
                entry_errors[f"{at}.name"] = [NAME_HELP]
            elif entry.name in seen:
                entry_errors[f"{at}.name"] = [f"Another deployment is named {entry.name!r}."]
            seen.add(entry.name)
        current = existing.get(entry.name)
        try:
            spec = launcher_spec_validate(entry.launcher, where=f"{at}.")
            if current is not None and spec != current.launcher:
                entry_errors[f"{at}.launcher"] = [
                    "A deployment's launcher cannot change: delete the deployment and create "
                    "it anew."
                ]
            parsed = _parse(entry.config, f"{at}.")
            document = routing.to_document(parsed)
            # Routing as it is needs no new check (an editor re-importing the file need
            # not hold every target's model); a change is checked as if written now.
            if current is None or document != current.config:
                _check_in_org(access, parsed, launcher=spec, where=f"{at}.")
        except ValidationError as exc:
            errors.update(entry_errors)
            errors.update(exc.details or {})
            continue
        errors.update(entry_errors)
        if entry_errors:
            continue
        if current is None:
            plan.creates.append((entry, document, spec))
            continue
        description = entry.description if entry.description != current.description else None
        routing_change = document if document != current.config else None
        if description is None and routing_change is None:
            plan.unchanged += 1
        else:
            plan.updates.append((current, description, routing_change))
    plan.deletes = [d for name, d in sorted(existing.items()) if name not in seen]
    if errors:
        raise ValidationError("The deployments are invalid; nothing was changed", details=errors)
    if plan.creates:
        access.require("deployment:create")
    if plan.updates:
        access.require("deployment:update")
    if plan.deletes:
        access.require("deployment:delete")
    return plan


def deployments_apply(
    *, access: Access, plan: Plan, meta: RequestMeta | None = None, source: str = "yaml"
) -> None:
    """Carry out a plan inside the caller's transaction (the access rules' import shares it).

    New launched deployments are started here; if anything fails, the endpoints started so
    far are stopped again and the error propagates, so the caller's transaction rolls
    back and nothing is left. Endpoints of deleted deployments are stopped once the
    transaction commits.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("deployments_apply runs inside the caller's transaction")
    started: list[tuple[str, str, dict[str, Any]]] = []
    try:
        for deployment in plan.deletes:
            kind = str(deployment.launcher.get("kind") or "")
            stop = functools.partial(
                _stop_quietly, str(deployment.pk), kind, dict(deployment.launcher_state)
            )
            _delete_row(access, deployment, meta, source)
            if kind:
                transaction.on_commit(stop, robust=True)
        for deployment, description, document in plan.updates:
            locked = _locked(deployment)
            _update_row(
                access,
                locked,
                document=document,
                description=description,
                comment=f"Imported ({source})",
                meta=meta,
                source=source,
            )
        for entry, document, spec in plan.creates:
            deployment = _create_row(
                access,
                name=entry.name,
                description=entry.description,
                document=document,
                spec=spec,
                comment=f"Imported ({source})",
                meta=meta,
                source=source,
            )
            if spec:
                state = _start(deployment)
                started.append((str(deployment.pk), spec["kind"], state))
                _mark_launched(access, deployment, state, meta)
    except BaseException:
        for deployment_id, kind, state in started:
            _stop_quietly(deployment_id, kind, state)
        raise


def deployments_replace(
    *,
    access: Access,
    document: Any,
    meta: RequestMeta | None = None,
    source: str = "yaml",
) -> Plan:
    """Replace every deployment of the org with ``document`` (``{"deployments": [...]}``):
    all or nothing. Needs ``deployment:view``, and create/update/delete for what changes."""
    access.require("deployment:view")
    if not isinstance(document, dict) or not isinstance(document.get("deployments"), list):
        details = {"deployments": ["Required list."]}
        if isinstance(document, dict):
            details |= {str(k)[:100]: ["Unknown field."] for k in document if k != "deployments"}
        raise ValidationError("Expected a mapping with a 'deployments' list", details=details)
    unknown = {str(k)[:100]: ["Unknown field."] for k in document if k != "deployments"}
    if unknown:
        raise ValidationError("Unknown field(s) in the document", details=unknown)
    plan = deployments_plan(access=access, entries=document["deployments"])
    with transaction.atomic():
        deployments_apply(access=access, plan=plan, meta=meta, source=source)
    return plan

"""Model access rules: which principals may use which models. Default deny.

A rule grants model patterns (``account/model``, ``account/*``,
``account/prefix/*``, ``*`` or a tag selector ``env=staging``; the grammar is
in keys/names.py) to users, teams, roles and service accounts.
A user matches through their username, their teams and their role; a
service account through itself and its role; an API key through its owner,
then narrowed by the key's own model restriction and its ancestors'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_delete
from django.dispatch import receiver

from audit import services as audit
from deployments import documents as deployment_documents
from deployments.models import FQN_ACCOUNT, Deployment
from inferia.errors import ValidationError
from inferia.request_meta import RequestMeta
from keys import names
from keys.models import AccessRule, ApiKey, ProviderAccount, ServiceAccount
from keys.principals import key_model_bounds
from orgs.access import Access
from orgs.models import Membership, Role, Team, TeamMember, User
from orgs.selectors import role_get_by_ref

TAG_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}=[A-Za-z0-9_.:/-]{1,128}")  # fullmatch
SUBJECT_FIELDS = ("users", "teams", "roles", "service_accounts")
RULE_FIELDS = ("models", "knowledge_bases", "description")
# The document's sections: the rules, and optionally the deployments they may name
# (``deployments.documents``; without the section, deployments are left alone).
DOCUMENT_FIELDS = ("authz_rules", "deployments")


@dataclass(frozen=True)
class Catalog:
    """Every enabled model of the org: FQN -> the account's tags; and every deployment
    (``deployment/<name>``, no tags): access rules name deployments like models."""

    models: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Catalog:
        models: dict[str, dict[str, str]] = {}
        for account in ProviderAccount.objects.all():
            for name in account.model_names:
                models[f"{account.name}/{name}"] = {str(k): str(v) for k, v in account.tags.items()}
        for name in Deployment.objects.values_list("name", flat=True):
            models[f"{FQN_ACCOUNT}/{name}"] = {}
        return cls(models)


def pattern_matches(pattern: str, fqn: str, tags: dict[str, str]) -> bool:
    # No FQN holds '=', while a tag value may hold '/' (TAG_RE): '=' alone decides.
    if "=" in pattern:
        key, value = pattern.split("=", 1)
        return tags.get(key) == value
    if pattern == "*":
        return True
    # Accounts never hold '/', models may: both split at the first '/'.
    account, model = names.split_fqn(pattern)
    fqn_account, fqn_model = names.split_fqn(fqn)
    return account == fqn_account and names.model_matches(model, fqn_model)


def _patterns_allow(patterns: list[str], fqn: str, tags: dict[str, str]) -> bool:
    return any(pattern_matches(p, fqn, tags) for p in patterns)


@dataclass(frozen=True)
class Subject:
    user: User | None = None
    service_account: ServiceAccount | None = None
    role_id: Any = None
    team_ids: frozenset = frozenset()

    @property
    def is_active(self) -> bool:
        """A disabled service account or a deactivated user may use nothing, whatever the rules say."""
        if self.service_account is not None:
            return self.service_account.is_active
        return self.user is not None and self.user.is_active


def subject_for_user(user: User) -> Subject | None:
    membership = Membership.objects.filter(user=user).first()
    if membership is None:
        return None
    teams = frozenset(TeamMember.objects.filter(user=user).values_list("team_id", flat=True))
    return Subject(user=user, role_id=membership.role_id, team_ids=teams)


def subject_for_service_account(account: ServiceAccount) -> Subject:
    return Subject(service_account=account, role_id=account.role_id)


def _rules_for(subject: Subject) -> list[AccessRule]:
    """The rules naming the subject, its role or one of its teams (matched in SQL:
    the rules for everyone else are never loaded)."""
    wanted = Q(pk__in=[])
    if subject.user is not None:
        wanted |= Q(users=subject.user)
    if subject.service_account is not None:
        wanted |= Q(service_accounts=subject.service_account)
    if subject.role_id is not None:
        wanted |= Q(roles=subject.role_id)
    if subject.team_ids:
        wanted |= Q(teams__in=subject.team_ids)
    matching = AccessRule.objects.filter(wanted).values("pk")
    return list(AccessRule.objects.filter(pk__in=matching))


def allowed_models(
    subject: Subject | None, *, key: ApiKey | None = None, catalog: Catalog | None = None
) -> list[str]:
    """FQNs the subject may use, narrowed by the key's model restriction and by that
    of every key above it (a key minted by a key stays within its parent's models at
    every use, not only when it was minted)."""
    if subject is None or not subject.is_active:
        return []
    catalog = catalog or Catalog.load()
    patterns = [p for rule in _rules_for(subject) for p in rule.model_patterns]
    allowed = [fqn for fqn, tags in catalog.models.items() if _patterns_allow(patterns, fqn, tags)]
    for bound in key_model_bounds(key) if key is not None else []:
        allowed = [fqn for fqn in allowed if _patterns_allow(bound, fqn, catalog.models[fqn])]
    return sorted(allowed)


def subject_for_access(access: Access) -> Subject | None:
    if access.service_account is not None:
        return subject_for_service_account(access.service_account)
    return subject_for_user(access.user) if access.user is not None else None


def allowed_for_access(access: Access, *, catalog: Catalog | None = None) -> list[str]:
    """``allowed_models`` for an Access: also within a delegated credential's one model."""
    allowed = allowed_models(subject_for_access(access), key=access.api_key, catalog=catalog)
    if access.model_bound is not None:
        allowed = [fqn for fqn in allowed if fqn == access.model_bound]
    return allowed


def may_use_model(access: Access, fqn: str) -> bool:
    return fqn in allowed_for_access(access)


# --- knowledge bases -------------------------------------------------------------------
# A rule's ``knowledge_bases`` grants collections by name: ``handbook``, a prefix
# ``support-*`` or ``*``. Granted is not enough: searching also needs the
# ``knowledge_base:view`` permission and uploading ``knowledge_base:add_data``
# (``knowledge.policy`` puts the two together).

KB_PATTERN_RE = re.compile(  # fullmatch
    r"\*|[a-z0-9][a-z0-9-]{0,49}\*|[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?"
)


def kb_pattern_matches(pattern: str, name: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def allowed_knowledge_bases(subject: Subject | None) -> list[str]:
    """Names of the org's knowledge bases some rule naming the subject grants."""
    from knowledge.models import KnowledgeBase  # knowledge builds on keys

    if subject is None or not subject.is_active:
        return []
    patterns = [p for rule in _rules_for(subject) for p in rule.knowledge_base_patterns]
    if not patterns:
        return []
    names = KnowledgeBase.objects.values_list("name", flat=True)
    return sorted(n for n in names if any(kb_pattern_matches(p, n) for p in patterns))


def who_may_use(fqn: str) -> dict[str, list[str]]:
    """Usernames and service-account slugs allowed to use ``fqn``."""
    catalog = Catalog.load()
    if fqn not in catalog.models:
        return {"users": [], "service_accounts": []}
    users = [
        m.user.username
        for m in Membership.objects.select_related("user")
        if fqn in allowed_models(subject_for_user(m.user), catalog=catalog)
    ]
    accounts = [
        sa.slug
        for sa in ServiceAccount.objects.filter(disabled_at__isnull=True)
        if fqn in allowed_models(subject_for_service_account(sa), catalog=catalog)
    ]
    return {"users": sorted(users), "service_accounts": sorted(accounts)}


@receiver(post_delete, sender=Membership, dispatch_uid="keys-access-rules-member-left")
def _member_left(sender, instance: Membership, **kwargs) -> None:
    """A member who leaves drops out of the rules naming them (as out of their teams),
    so that rejoining later does not bring old grants back."""
    AccessRule.users.through.objects.filter(
        accessrule__org_id=instance.org_id, user_id=instance.user_id
    ).delete()


# --- YAML import / export ---------------------------------------------------------------


def export_rules() -> list[dict[str, Any]]:
    """The rules in ``authz_rules`` shape, in order; what ``parse_rules`` accepts back."""
    out = []
    for rule in AccessRule.objects.prefetch_related("users", "teams", "roles", "service_accounts"):
        entry: dict[str, Any] = {}
        if rule.model_patterns or not rule.knowledge_base_patterns:
            entry["models"] = list(rule.model_patterns)
        if rule.knowledge_base_patterns:
            entry["knowledge_bases"] = list(rule.knowledge_base_patterns)
        if rule.description:
            entry["description"] = rule.description
        subjects = {
            "users": sorted(u.username for u in rule.users.all()),
            "teams": sorted(t.slug for t in rule.teams.all()),
            "roles": sorted(r.slug for r in rule.roles.all()),
            "service_accounts": sorted(s.slug for s in rule.service_accounts.all()),
        }
        if not any(subjects.values()):
            # Its last subject was deleted: it grants nothing, and the importer
            # (rightly) refuses a rule without subjects, so leave it out.
            continue
        entry.update({k: v for k, v in subjects.items() if v})
        out.append(entry)
    return out


def export_yaml(access: Access | None = None) -> str:
    """The rules, and the org's deployments when it has any and ``access`` may see them
    (``deployment:view``; no access: the operator's export): one document, one import."""
    document: dict[str, Any] = {"authz_rules": export_rules()}
    shows_deployments = access is None or access.can("deployment:view")
    deployments = deployment_documents.export_entries() if shows_deployments else []
    if deployments:
        document["deployments"] = deployments
    return yaml.safe_dump(document, sort_keys=False)


@dataclass
class ParsedRule:
    description: str
    models: list[str]
    knowledge_bases: list[str]
    users: list[User]
    teams: list[Team]
    roles: list[Role]
    service_accounts: list[ServiceAccount]


def parse_rules(document: Any, org) -> list[ParsedRule]:
    """Validate every rule; errors name the rule and field (``authz_rules[2].teams``)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(document, dict) or not isinstance(document.get("authz_rules"), list):
        details = {"authz_rules": ["Required list."]}
        if isinstance(document, dict):
            details |= {str(k): ["Unknown field."] for k in document if k not in DOCUMENT_FIELDS}
        raise ValidationError("Expected a mapping with an 'authz_rules' list", details=details)
    users = {u.username: u for u in User.objects.filter(memberships__org=org)}
    teams = {t.slug: t for t in Team.objects.all()}
    accounts = {s.slug: s for s in ServiceAccount.objects.all()}
    # Roles go through the one role resolver (id, slug or displayed name: ``Member``).
    lookups = {"users": users, "teams": teams, "roles": {}, "service_accounts": accounts}
    for key in sorted(map(str, document)):
        if key not in DOCUMENT_FIELDS:
            errors[key] = ["Unknown field."]
    parsed = []
    for index, raw in enumerate(document["authz_rules"]):
        where = f"authz_rules[{index}]"
        if not isinstance(raw, dict):
            errors[where] = ["Each rule must be a mapping."]
            continue
        for key in sorted(map(str, set(raw) - {*RULE_FIELDS, *SUBJECT_FIELDS})):
            errors[f"{where}.{key}"] = ["Unknown field."]
        knowledge_bases = raw.get("knowledge_bases", [])
        if not isinstance(knowledge_bases, list) or not all(
            isinstance(k, str) and KB_PATTERN_RE.fullmatch(k) for k in knowledge_bases
        ):
            errors[f"{where}.knowledge_bases"] = [
                "A list of knowledge base names, 'prefix*' or '*'."
            ]
            knowledge_bases = []
        # A rule grants models, knowledge bases or both.
        models = raw.get("models", [] if knowledge_bases else None)
        if (
            not isinstance(models, list)
            or not (models or knowledge_bases)
            or not all(isinstance(m, str) for m in models)
        ):
            errors[f"{where}.models"] = ["A non-empty list of model names is required."]
            models = []
        bad = [
            m for m in models if not (m == "*" or names.is_model_pattern(m) or TAG_RE.fullmatch(m))
        ]
        if bad:
            errors[f"{where}.models"] = [
                f"Not 'account/model', 'account/*', 'account/prefix/*' or 'tag=value': {m!r}"
                for m in bad
            ]
        resolved: dict[str, list] = {}
        for name in SUBJECT_FIELDS:
            values = raw.get(name, [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                errors[f"{where}.{name}"] = ["Must be a list of names."]
                continue
            found: dict[str, Any] = {}
            for value in values:
                try:
                    match = (
                        role_get_by_ref(value, field=f"{where}.{name}", org=org)
                        if name == "roles"
                        else lookups[name].get(value)
                    )
                except ValidationError as exc:  # a name shared by several roles
                    errors.update(exc.details or {})
                    found[value] = None
                    continue
                if match is not None:
                    found[value] = match
            missing = [v for v in values if v not in found]
            if missing:
                errors.setdefault(f"{where}.{name}", []).extend(
                    f"Unknown {name[:-1].replace('_', ' ')}: {v}" for v in missing
                )
            resolved[name] = list(dict.fromkeys(found[v] for v in values if found.get(v)))
        # A subject field already in error explains the emptiness; say it once.
        subject_errors = any(f"{where}.{name}" in errors for name in SUBJECT_FIELDS)
        if not any(resolved.get(name) for name in SUBJECT_FIELDS) and not subject_errors:
            errors.setdefault(where, []).append(
                "A rule needs at least one user, team, role or service account."
            )
        parsed.append(
            ParsedRule(
                description=str(raw.get("description", ""))[:500],
                models=models,
                knowledge_bases=list(dict.fromkeys(knowledge_bases)),
                users=resolved.get("users", []),
                teams=resolved.get("teams", []),
                roles=resolved.get("roles", []),
                service_accounts=resolved.get("service_accounts", []),
            )
        )
    if errors:
        raise ValidationError("The access rules are invalid; nothing was changed", details=errors)
    return parsed


def load_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValidationError(
            f"Malformed YAML{where}", details={"yaml": [str(getattr(exc, "problem", exc))]}
        ) from exc


def access_rules_replace(
    *, access: Access, document: Any, meta: RequestMeta | None = None, source: str = "api"
) -> list[AccessRule]:
    """Replace every rule of the org with ``document``: all or nothing.

    With a ``deployments:`` section the org's deployments are replaced too, in the same
    transaction (so rules may name deployments the file defines), which also needs
    ``deployment:create``/``update``/``delete`` for what changes; errors of both
    sections are reported together, by path. Without it, deployments are untouched.
    """
    # deployments builds on keys (accounts, access rules): imported here, not at the top.
    from deployments import services as deployment_services

    access.require("policy:manage")
    has_deployments = isinstance(document, dict) and "deployments" in document
    errors: dict[str, Any] = {}
    parsed: list[ParsedRule] = []
    plan = None
    try:
        parsed = parse_rules(document, access.org)
    except ValidationError as exc:
        if not has_deployments:
            raise
        errors.update(exc.details or {})
    if has_deployments:
        try:
            plan = deployment_services.deployments_plan(
                access=access, entries=document["deployments"]
            )
        except ValidationError as exc:
            errors.update(exc.details or {})
    if errors:
        raise ValidationError("The document is invalid; nothing was changed", details=errors)
    with transaction.atomic():
        if plan is not None:
            deployment_services.deployments_apply(
                access=access, plan=plan, meta=meta, source=source
            )
        before = export_rules()
        AccessRule.objects.all().delete()
        created = [_create_rule(access, position, item) for position, item in enumerate(parsed)]
        audit.record(
            action="policy:manage",
            outcome="success",
            org=access.org,
            actor=access.user,
            actor_label=access.actor_label,
            target_type="keys.accessrule",
            meta=meta,
            data={
                "op": "access_rules_replace",
                "source": source,
                "count": len(created),
                "before": before,
                "after": export_rules(),
                "deployments": plan.changes if plan is not None else None,
            },
        )
    return created


def _create_rule(access: Access, position: int, item: ParsedRule) -> AccessRule:
    rule = AccessRule.objects.create(
        org=access.org,
        position=position,
        description=item.description,
        model_patterns=item.models,
        knowledge_base_patterns=item.knowledge_bases,
    )
    rule.users.set(item.users)
    rule.teams.set(item.teams)
    rule.roles.set(item.roles)
    rule.service_accounts.set(item.service_accounts)
    return rule


def access_rule_create(
    *, access: Access, rule: dict[str, Any], meta: RequestMeta | None = None
) -> AccessRule:
    """Append one rule (validated like an import of one rule)."""
    access.require("policy:manage")
    try:
        (item,) = parse_rules({"authz_rules": [rule]}, access.org)
    except ValidationError as exc:
        # One rule, not a document: name its fields as sent ("teams", not "authz_rules[0].teams").
        details = {
            key.removeprefix("authz_rules[0]").removeprefix(".") or "non_field_errors": messages
            for key, messages in (exc.details or {}).items()
        }
        raise ValidationError(
            "The access rule is invalid; nothing was changed", details=details
        ) from exc
    with transaction.atomic():
        last = AccessRule.objects.order_by("-position").values_list("position", flat=True).first()
        created = _create_rule(access, 0 if last is None else last + 1, item)
        audit.record(
            action="policy:manage",
            outcome="success",
            org=access.org,
            actor=access.user,
            actor_label=access.actor_label,
            target=created,
            meta=meta,
            data={"op": "access_rule_create", "models": item.models},
        )
    return created


def access_rule_delete(
    *, access: Access, rule: AccessRule, meta: RequestMeta | None = None
) -> None:
    access.require("policy:manage")
    with transaction.atomic():
        audit.record(
            action="policy:manage",
            outcome="success",
            org=access.org,
            actor=access.user,
            actor_label=access.actor_label,
            target=rule,
            meta=meta,
            data={"op": "access_rule_delete", "models": rule.model_patterns},
        )
        rule.delete()

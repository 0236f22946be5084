"""Dashboard pages of orgs/: login with the TOTP step, 2FA setup, password change,
org switcher and creation, members, invitations, teams, roles and settings.

Every org page is behind ``org_page(permission)``, the same permission names the
API declares; POST handlers call services and show ``InferiaError`` on the form.
"""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as django_login
from django.contrib.auth import logout as django_logout
from django.contrib.auth import update_session_auth_hash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from audit import services as audit
from inferia import store
from inferia.errors import (
    InferiaError,
    OtpRequired,
    ServiceUnavailable,
    TwoFactorRequired,
    ValidationError,
)
from inferia.request_meta import RequestMeta
from inferia.request_types import OrgPageRequest
from inferia.store.windows import StoreUnavailable
from orgs import forms, selectors
from orgs import policy as policy_defaults
from orgs.access import MEMBER
from orgs.models import Organization, User
from orgs.pages import (
    apply_error,
    confirmation_page,
    error_page,
    form_page,
    login_redirect,
    org_page,
    page_context,
    post_action,
    post_refused,
    two_factor_setup_redirect,
)
from orgs.services import auth, cache, device, tenancy, two_factor

__all__ = ["org_page"]

PENDING_LOGIN_SECONDS = 300


def _next_url(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


def _start_session(request: HttpRequest, user: User) -> None:
    django_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    auth.login_record(meta=RequestMeta.from_http(request), user=user, via="dashboard")
    messages.success(request, f"Signed in as {user.username}.")


def _session_login(request: HttpRequest, user: User) -> HttpResponse:
    _start_session(request, user)
    return redirect(_next_url(request, reverse("orgs:org-list")))


# --- login, logout, password, 2FA ------------------------------------------------------


def login_view(request: HttpRequest) -> HttpResponse:
    """Password, then (when enrolled) a TOTP or recovery code, with the API's throttles."""
    next_url = request.POST.get("next") or request.GET.get("next", "")
    pending = request.session.get("login_pending")
    if pending and time.time() - pending["at"] > PENDING_LOGIN_SECONDS:
        request.session.pop("login_pending", None)
        pending = None
    if request.method == "POST" and request.POST.get("step") == "otp" and pending:
        otp_form = forms.OtpForm(request.POST)
        user = User.objects.filter(pk=pending["user"]).first()
        if otp_form.is_valid() and user is not None:
            try:
                auth.login_second_factor(
                    meta=RequestMeta.from_http(request),
                    user=user,
                    otp_code=otp_form.cleaned_data["otp_code"],
                )
            except InferiaError as exc:
                apply_error(otp_form, request, exc)
            else:
                request.session.pop("login_pending", None)
                return _session_login(request, user)
        return render(
            request, "orgs/login_otp.html", {"form": otp_form, "next": next_url}, status=400
        )
    if request.method == "POST":
        form = forms.LoginForm(request.POST)
        if form.is_valid():
            try:
                user = auth.login_verify(
                    request=request,
                    username=form.cleaned_data["username"],
                    password=form.cleaned_data["password"],
                )
            except OtpRequired:
                user = User.objects.get(username=form.cleaned_data["username"])
                request.session["login_pending"] = {"user": str(user.pk), "at": time.time()}
                return render(
                    request, "orgs/login_otp.html", {"form": forms.OtpForm(), "next": next_url}
                )
            except InferiaError as exc:
                apply_error(form, request, exc)
            else:
                return _session_login(request, user)
        return render(request, "orgs/login.html", {"form": form, "next": next_url}, status=400)
    request.session.pop("login_pending", None)
    return render(request, "orgs/login.html", {"form": forms.LoginForm(), "next": next_url})


def invitation_accept_page(request: HttpRequest, token: str) -> HttpResponse:
    """The link of an invitation e-mail: accept with the signed-in account (it must own
    the invited address) or with a new account, which is then signed in."""
    invitation = selectors.invitation_by_token(token)
    if invitation is None:
        return error_page(request, 404, "This invitation link is not valid.")
    context = {
        "invitation": invitation,
        "login_url": f"{reverse('orgs:login')}?{urlencode({'next': request.path})}",
    }
    if invitation.status != "pending":
        return render(
            request, "orgs/invitation_accept.html", {**context, "closed": True}, status=409
        )
    user = request.user if request.user.is_authenticated else None
    form = None if user is not None else forms.InvitationSignupForm(request.POST or None)
    if request.method == "POST" and (form is None or form.is_valid()):
        try:
            membership = tenancy.invitation_accept(
                token=token,
                user=user,
                username=form.cleaned_data["username"] if form is not None else None,
                password=form.cleaned_data["password"] if form is not None else None,
                meta=RequestMeta.from_http(request),
            )
        except InferiaError as exc:
            apply_error(form, request, exc)
        else:
            if user is None:
                _start_session(request, membership.user)
            messages.success(
                request, f"You joined {invitation.org.name} as {invitation.role.name}."
            )
            return redirect("keys:org-overview", org=invitation.org.slug)
    failed = request.method == "POST"
    return render(
        request,
        "orgs/invitation_accept.html",
        {**context, "form": form},
        status=400 if failed else 200,
    )


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        audit.record(
            action="auth:logout",
            outcome="success",
            actor=request.user,
            meta=RequestMeta.from_http(request),
            data={"via": "dashboard"},
        )
    django_logout(request)
    messages.info(request, "Signed out.")
    return redirect("orgs:login")


def password_change_view(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return login_redirect(request)
    user = request.user
    form = forms.PasswordChangeForm(request.POST or None)

    def save() -> None:
        auth.password_change(
            user=user,
            current_password=form.cleaned_data["current_password"],
            new_password=form.cleaned_data["new_password"],
            meta=RequestMeta.from_http(request),
        )
        update_session_auth_hash(request, user)
        # The change ended every login of the user; this session goes on, same login time.
        auth.dashboard_session_start(
            request=request,
            user=user,
            auth_time=request.session.get(auth.SESSION_AUTH_TIME_KEY),
        )

    return form_page(
        request,
        form,
        save=save,
        success="Password changed. Every API token of yours was signed out.",
        redirect_to="orgs:org-list",
        template="orgs/password_change.html",
        context=lambda: {"form": form},
    )


def two_factor_view(request: HttpRequest) -> HttpResponse:
    """Start enrolment (QR code), confirm with a code (recovery codes shown once), or disable."""
    if not request.user.is_authenticated:
        return login_redirect(request)
    user = request.user
    enabled = two_factor.confirmed_device(user) is not None
    context = {"enabled": enabled, "next": request.GET.get("next") or request.POST.get("next", "")}
    op = request.POST.get("op") if request.method == "POST" else None
    try:
        if op == "start" and not enabled:
            setup = two_factor.totp_setup(user=user, meta=RequestMeta.from_http(request))
            secret = setup.otpauth_uri.split("secret=", 1)[1].split("&", 1)[0]
            return render(
                request,
                "orgs/two_factor.html",
                {
                    **context,
                    "setup": setup,
                    "manual_secret": secret,
                    "form": forms.OtpForm(),
                },
            )
        if op == "confirm" and not enabled:
            form = forms.OtpForm(request.POST)
            if form.is_valid():
                codes = two_factor.totp_confirm(
                    user=user,
                    otp_code=form.cleaned_data["otp_code"],
                    meta=RequestMeta.from_http(request),
                )
                messages.success(
                    request, "Two-factor authentication is on. Keep your recovery codes safe."
                )
                response = render(
                    request,
                    "orgs/two_factor.html",
                    {**context, "enabled": True, "recovery_codes": codes},
                )
                response["Cache-Control"] = "no-store"
                return response
        if op == "disable" and enabled:
            form = forms.OtpForm(request.POST)
            if form.is_valid():
                two_factor.totp_disable(
                    user=user,
                    otp_code=form.cleaned_data["otp_code"],
                    meta=RequestMeta.from_http(request),
                )
                messages.success(request, "Two-factor authentication is off.")
                return redirect("orgs:2fa-setup")
    except InferiaError as exc:
        messages.error(request, exc.message)
        if op == "confirm":
            messages.info(request, "Start again to get a new QR code.")
    return render(request, "orgs/two_factor.html", {**context, "form": forms.OtpForm()})


# --- the device authorization grant: a person approves a CLI's sign-in --------------------


def device_view(request: HttpRequest) -> HttpResponse:
    """``/device``: type the code a tool shows, see which client asks, approve or deny.

    Signed-in people only (password + 2FA, or SSO): the approved tool's tokens speak for
    them. Every step is the service's (throttled code guesses, the org's 2FA policy, audit).
    """
    user = request.user
    if not user.is_authenticated or not isinstance(user, User):
        return login_redirect(request)
    if request.method != "POST":
        form = forms.DeviceCodeForm(initial={"user_code": request.GET.get("user_code", "")[:20]})
        return render(request, "orgs/device.html", {"form": form})
    form = forms.DeviceCodeForm(request.POST)
    if not form.is_valid():
        return render(request, "orgs/device.html", {"form": form}, status=400)
    meta = RequestMeta.from_http(request)
    code = form.cleaned_data["user_code"]
    decision = request.POST.get("decision", "")
    try:
        if request.POST.get("step") == "decide":
            if decision not in ("approve", "deny"):
                raise ValidationError("Choose Approve or Deny")
            answered = device.device_authorization_decide(
                actor=user, user_code=code, approve=decision == "approve", meta=meta
            )
            return render(
                request,
                "orgs/device_done.html",
                {
                    "approved": decision == "approve",
                    "client_name": device.client_name(answered.client_id) or answered.client_id,
                },
            )
        found = device.device_authorization_find(actor=user, user_code=code, meta=meta)
    except TwoFactorRequired as exc:
        refused = getattr(exc, "access", None)
        if refused is None:
            raise
        back = f"{reverse('orgs:device')}?{urlencode({'user_code': code})}"
        return two_factor_setup_redirect(request, refused.org, next_url=back)
    except InferiaError as exc:
        apply_error(form, request, exc)
        return render(request, "orgs/device.html", {"form": form}, status=exc.status)
    response = render(
        request,
        "orgs/device_confirm.html",
        {
            "authorization": found,
            "client_name": device.client_name(found.client_id) or found.client_id,
            "user_code": device.format_user_code(device.normalize_user_code(code) or ""),
            "memberships": selectors.membership_list_for_user(user),
            "session_hours": settings.INFERIA_SESSION_ABSOLUTE_HOURS,
        },
    )
    response["Cache-Control"] = "no-store"
    return response


# --- organizations -----------------------------------------------------------------------


def org_list(request: HttpRequest) -> HttpResponse:
    """The org switcher and the form to create an organization."""
    if not request.user.is_authenticated:
        return login_redirect(request)
    user = request.user
    go = request.GET.get("go", "")
    if go.startswith("/orgs/"):
        return redirect(go)
    form = forms.OrganizationCreateForm(request.POST or None)
    return form_page(
        request,
        form,
        save=lambda: tenancy.organization_create(
            user=user,
            slug=form.cleaned_data["slug"],
            name=form.cleaned_data["name"],
            meta=RequestMeta.from_http(request),
        ),
        success=lambda org: f"Organization {org.name} created; you are its Owner.",
        redirect_to=lambda org: reverse("keys:org-overview", kwargs={"org": org.slug}),
        template="orgs/org_list.html",
        context=lambda: {
            "form": form,
            "memberships": selectors.membership_list_for_user(user),
        },
    )


@org_page("org:update")
def org_settings(request: OrgPageRequest, org: Organization) -> HttpResponse:
    policy = org.policy
    initial = {
        "name": org.name,
        "require_2fa": org.require_2fa,
        "allowed_private_hosts": "\n".join(policy.allowed_private_hosts),
        **{name: getattr(policy, name) for name in forms.SettingsForm.SETTING_FIELDS},
    }
    form = forms.SettingsForm(request.POST or None, initial=initial)
    for name in forms.SettingsForm.SETTING_FIELDS:
        # The real value behind an empty field, from the same source the gateway reads.
        form.fields[name].help_text = f"Empty: {policy_defaults.unset_meaning(name)}."
    return form_page(
        request,
        form,
        save=lambda: tenancy.organization_update(
            access=request.access, changes=form.changes(), meta=RequestMeta.from_http(request)
        ),
        success="Settings saved.",
        redirect_to=reverse("orgs:settings-update", kwargs={"org": org.slug}),
        template="orgs/settings.html",
        context=lambda: page_context(request, form=form),
    )


# --- response cache --------------------------------------------------------------------------

CACHE_UNREADABLE = "Redis did not answer: what the cache holds cannot be shown right now."


@org_page("org:view")
def cache_page(request: OrgPageRequest, org: Organization) -> HttpResponse:
    """The org's response cache: what it holds, its settings (``cache:manage`` changes
    them) and purges. The same service as ``/api/v1/orgs/{org}/cache``."""
    if refused := post_refused(request, "cache:manage"):
        return refused
    policy = org.policy
    form = forms.CacheSettingsForm(
        request.POST or None,
        initial={field: getattr(policy, knob) for field, knob in cache.FIELDS.items()},
    )

    def context() -> dict:
        try:
            state, unreadable = cache.cache_state(request.access), ""
        except StoreUnavailable:
            state, unreadable = None, CACHE_UNREADABLE
        lookups = (state or {}).get("hits", 0) + (state or {}).get("misses", 0)
        return page_context(
            request,
            form=form,
            purge_form=forms.CachePurgeForm(),
            state=state,
            unreadable=unreadable,
            available=store.redis_enabled(),
            hit_percent=round(100 * state["hits"] / lookups) if state and lookups else None,
            needs_redis=cache.NEEDS_REDIS,
        )

    return form_page(
        request,
        form,
        save=lambda: cache.cache_settings_update(
            access=request.access,
            changes={cache.FIELDS[name]: value for name, value in form.cleaned_data.items()},
            meta=RequestMeta.from_http(request),
        ),
        success="Cache settings saved.",
        redirect_to=reverse("orgs:cache", kwargs={"org": org.slug}),
        template="orgs/cache.html",
        context=context,
    )


@require_POST
@org_page("org:view")
def cache_purge_page(request: OrgPageRequest, org: Organization) -> HttpResponse:
    """Purge the org's cached answers, of one model or all; asks first."""
    if refused := post_refused(request, "cache:manage"):
        return refused
    back = reverse("orgs:cache", kwargs={"org": org.slug})
    form = forms.CachePurgeForm(request.POST)
    if not form.is_valid():
        for problems in form.errors.values():
            for problem in problems:
                messages.error(request, str(problem))
        return redirect(back)
    model = form.cleaned_data["model"] or None
    if ask := confirmation_page(
        request,
        title=f"Purge the cached answers of {model}?" if model else "Purge every cached answer?",
        consequence="The next identical requests go to the provider again, and use tokens.",
        button="Yes, purge",
        cancel_url=back,
        permission="cache:manage",
    ):
        return ask

    def purge() -> str:
        try:
            purged = cache.cache_purge(
                access=request.access, model=model, meta=RequestMeta.from_http(request)
            )
        except StoreUnavailable:
            raise ServiceUnavailable("Redis did not answer: nothing was purged.") from None
        noun = "answer" if purged == 1 else "answers"
        return f"{purged} cached {noun} purged" + (f" ({model})." if model else ".")

    return post_action(request, purge, redirect_to=back)


# --- members and invitations ---------------------------------------------------------------


@org_page("member:view")
def member_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    if refused := post_refused(request, "member:invite"):
        return refused
    roles = list(selectors.role_list())
    # Least privilege by default: a new invitation is for a Member unless changed.
    invite_form = forms.InvitationForm(
        request.POST or None, roles=roles, prefix="invite", initial={"role": MEMBER}
    )
    return form_page(
        request,
        invite_form,
        save=lambda: tenancy.invitation_create(
            access=request.access,
            email=invite_form.cleaned_data["email"],
            role=selectors.role_require_by_ref(invite_form.cleaned_data["role"]),
            meta=RequestMeta.from_http(request),
        ),
        success=lambda _: f"Invitation sent to {invite_form.cleaned_data['email']}.",
        redirect_to=reverse("orgs:member-list", kwargs={"org": org.slug}),
        template="orgs/member_list.html",
        context=lambda: page_context(
            request,
            members=list(selectors.member_list()),
            invitations=list(selectors.invitation_list()),
            roles=roles,
            invite_form=invite_form,
        ),
    )


@require_POST
@org_page("member:view")
def member_update(request: OrgPageRequest, org: Organization, member_id) -> HttpResponse:
    membership = selectors.member_get(member_id)
    if membership is None:
        return error_page(request, 404)
    role = selectors.role_get_by_ref(request.POST.get("role", ""))
    if request.POST.get("op") == "remove" and (
        ask := confirmation_page(
            request,
            title=f"Remove {membership.user.username} from {org.name}?",
            consequence="They lose access at once; their personal API keys stop working.",
            button="Yes, remove",
            cancel_url=reverse("orgs:member-list", kwargs={"org": org.slug}),
            permission="member:delete",
        )
    ):
        return ask

    def change() -> str:
        if request.POST.get("op") == "remove":
            tenancy.member_remove(
                access=request.access, membership=membership, meta=RequestMeta.from_http(request)
            )
            return f"{membership.user.username} was removed."
        if role is None:
            raise ValidationError("Choose a role.")
        tenancy.member_change_role(
            access=request.access,
            membership=membership,
            role=role,
            meta=RequestMeta.from_http(request),
        )
        return f"{membership.user.username} is now {role.name}."

    return post_action(
        request, change, redirect_to=reverse("orgs:member-list", kwargs={"org": org.slug})
    )


@require_POST
@org_page("member:invite")
def invitation_update(request: OrgPageRequest, org: Organization, invitation_id) -> HttpResponse:
    invitation = selectors.invitation_list().filter(pk=invitation_id).first()
    if invitation is None:
        return error_page(request, 404)
    if request.POST.get("op") != "resend" and (
        ask := confirmation_page(
            request,
            title=f"Revoke the invitation to {invitation.email}?",
            consequence="The link in the e-mail stops working.",
            button="Yes, revoke",
            cancel_url=reverse("orgs:member-list", kwargs={"org": org.slug}),
        )
    ):
        return ask

    def change() -> str:
        if request.POST.get("op") == "resend":
            tenancy.invitation_resend(
                access=request.access, invitation=invitation, meta=RequestMeta.from_http(request)
            )
            return f"Invitation to {invitation.email} sent again."
        tenancy.invitation_revoke(
            access=request.access, invitation=invitation, meta=RequestMeta.from_http(request)
        )
        return f"Invitation to {invitation.email} revoked."

    return post_action(
        request, change, redirect_to=reverse("orgs:member-list", kwargs={"org": org.slug})
    )


# --- teams -----------------------------------------------------------------------------------


@org_page("member:view")
def team_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    if refused := post_refused(request, "team:manage"):
        return refused
    form = forms.TeamForm(request.POST or None)

    def context() -> dict:
        teams = [
            (team, [m.user.username for m in selectors.team_member_list(team)])
            for team in selectors.team_list()
        ]
        member_form = forms.TeamMemberForm(members=selectors.member_list())
        usage = None
        if request.access.can("usage:view"):
            usage = _team_usage_last_30_days()
        return page_context(
            request, teams=teams, form=form, member_form=member_form, team_usage=usage
        )

    return form_page(
        request,
        form,
        save=lambda: tenancy.team_create(
            access=request.access, meta=RequestMeta.from_http(request), **form.cleaned_data
        ),
        success=lambda team: f"Team {team.name} created.",
        redirect_to=reverse("orgs:team-list", kwargs={"org": org.slug}),
        template="orgs/team_list.html",
        context=context,
    )


def _team_usage_last_30_days() -> dict[str, dict]:
    """Each team's requests, tokens and cost over the last 30 days (the usage page's
    selector, grouped by team), keyed by team slug."""
    from audit import selectors as audit_selectors

    until = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    report = audit_selectors.usage_report(
        period="day", since=until - timedelta(days=30), until=until, group_by="team"
    )
    return {entry["group"]: entry for entry in report["groups"]}


@require_POST
@org_page("team:manage")
def team_update(request: OrgPageRequest, org: Organization, team_id) -> HttpResponse:
    team = selectors.team_list().filter(pk=team_id).first()
    if team is None:
        return error_page(request, 404)
    op = request.POST.get("op")
    if op == "delete" and (
        ask := confirmation_page(
            request,
            title=f"Delete team {team.name}?",
            consequence="Access rules stop granting models through this team.",
            button="Yes, delete it",
            cancel_url=reverse("orgs:team-list", kwargs={"org": org.slug}),
        )
    ):
        return ask

    def change() -> str:
        if op == "delete":
            tenancy.team_delete(
                access=request.access, team=team, meta=RequestMeta.from_http(request)
            )
            return f"Team {team.name} deleted."
        user = User.objects.filter(username=request.POST.get("username", "")).first()
        membership = selectors.member_get_by_user(user.pk) if user else None
        if user is None or membership is None:
            raise ValidationError("Choose a member of this organization.")
        if op == "remove_member":
            tenancy.team_member_remove(
                access=request.access,
                team=team,
                membership=membership,
                meta=RequestMeta.from_http(request),
            )
            return f"{user.username} left {team.name}."
        tenancy.team_member_add(
            access=request.access,
            team=team,
            membership=membership,
            meta=RequestMeta.from_http(request),
        )
        return f"{user.username} joined {team.name}."

    return post_action(
        request, change, redirect_to=reverse("orgs:team-list", kwargs={"org": org.slug})
    )


# --- roles -----------------------------------------------------------------------------------


@org_page("member:view")
def role_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    if refused := post_refused(request, "policy:manage"):
        return refused
    form = forms.RoleForm(request.POST or None)
    return form_page(
        request,
        form,
        save=lambda: tenancy.role_create(
            access=request.access, meta=RequestMeta.from_http(request), **form.cleaned_data
        ),
        success=lambda role: f"Role {role.name} created.",
        redirect_to=reverse("orgs:role-list", kwargs={"org": org.slug}),
        template="orgs/role_list.html",
        context=lambda: page_context(request, roles=list(selectors.role_list()), form=form),
    )


@org_page("member:view")
def role_update(request: OrgPageRequest, org: Organization, role_id) -> HttpResponse:
    if refused := post_refused(request, "policy:manage"):
        return refused
    role = selectors.role_get(role_id)
    if role is None or role.is_builtin:
        return error_page(request, 404)
    form = forms.RoleForm(
        request.POST or None,
        initial={
            "name": role.name,
            "slug": role.slug,
            "description": role.description,
            "permissions": role.permissions,
        },
    )
    form.fields["slug"].disabled = True
    if request.method == "POST":
        try:
            if request.POST.get("op") == "delete":
                if ask := confirmation_page(
                    request,
                    title=f"Delete role {role.name}?",
                    consequence="A role still held by members or service accounts "
                    "cannot be deleted.",
                    button="Yes, delete it",
                    cancel_url=reverse("orgs:role-list", kwargs={"org": org.slug}),
                ):
                    return ask
                tenancy.role_delete(
                    access=request.access, role=role, meta=RequestMeta.from_http(request)
                )
                messages.success(request, f"Role {role.name} deleted.")
                return redirect("orgs:role-list", org=org.slug)
            if form.is_valid():
                changes = {k: form.cleaned_data[k] for k in ("name", "description", "permissions")}
                tenancy.role_update(
                    access=request.access,
                    role=role,
                    changes=changes,
                    meta=RequestMeta.from_http(request),
                )
                messages.success(request, f"Role {role.name} saved.")
                return redirect("orgs:role-list", org=org.slug)
        except InferiaError as exc:
            apply_error(form, request, exc)
    return render(
        request,
        "orgs/role_form.html",
        page_context(request, role=role, form=form),
        status=400 if form.errors else 200,
    )

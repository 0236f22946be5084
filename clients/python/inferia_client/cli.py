"""``inferia``: login (device flow), logout, token, whoami."""

from __future__ import annotations

import argparse
import json
import sys
import webbrowser

import httpx

from inferia_client.device import DEFAULT_CLIENT_ID, DeviceCode, LoginFailed, device_login
from inferia_client.session import USER_AGENT, Session, error_text
from inferia_client.store import (
    STORE_FILE,
    STORE_KEYRING,
    CredentialsError,
    FileStore,
    Profile,
    normalize_server,
    open_store,
    profile_delete,
    profile_for,
    profile_save,
)


def _say(text: str) -> None:
    print(text, flush=True)


def _warn(text: str) -> None:
    print(f"inferia: {text}", file=sys.stderr, flush=True)


def cmd_login(args: argparse.Namespace) -> int:
    server = normalize_server(args.server)
    if not server.startswith(("http://", "https://")):
        _warn("--server must be an http:// or https:// URL")
        return 2

    def show(code: DeviceCode) -> None:
        _say(f"To sign in, open {code.verification_uri} and enter the code: {code.user_code}")
        if code.verification_uri_complete:
            _say(f"Or open {code.verification_uri_complete} and check that it shows that code.")
        _say(f"Waiting for approval (the code expires in {code.expires_in // 60} minutes)...")
        if args.open_browser:
            webbrowser.open(code.verification_uri_complete or code.verification_uri)

    credentials = device_login(server, org=args.org or "", client_id=args.client_id, show=show)
    store = open_store(args.store)
    try:
        store.save(server, credentials)
    except CredentialsError as exc:
        if store.kind != STORE_KEYRING or args.store == STORE_KEYRING:
            raise
        _warn(f"{exc}; keeping the token in a 0600 file instead")
        store = FileStore()
        store.save(server, credentials)
    profile_save(
        Profile(server=server, org=args.org or "", client_id=args.client_id, store=store.kind)
    )
    where = "the OS keyring" if store.kind == STORE_KEYRING else str(FileStore().path)
    in_org = f" (organization {args.org})" if args.org else ""
    _say(f"Signed in to {server} as {credentials.username}{in_org}. Token kept in {where}.")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    profile = profile_for(args.server)
    store = open_store(profile.store)
    credentials = store.load(profile.server)
    code = 0
    if credentials is not None:
        try:
            response = httpx.post(
                f"{profile.server}/api/v1/auth/logout",
                json={"refresh_token": credentials.refresh_token},
                headers={"User-Agent": USER_AGENT},
                timeout=30.0,
            )
            if response.status_code not in (204, 401):
                _warn(f"the server did not confirm the logout ({error_text(response)})")
                code = 1
        except httpx.HTTPError as exc:
            _warn(
                f"cannot reach {profile.server} ({type(exc).__name__}); forgetting the login here"
            )
            code = 1
        store.delete(profile.server)
    profile_delete(profile.server)
    _say(f"Signed out of {profile.server}.")
    return code


def cmd_token(args: argparse.Namespace) -> int:
    session = Session(args.server)
    try:
        _say(session.access_token())
    finally:
        session.close()
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    session = Session(args.server)
    try:
        response = session.get("/api/v1/auth/me")
    finally:
        session.close()
    if response.status_code != 200:
        _warn(f"whoami failed: {error_text(response)}")
        return 1
    me = response.json()
    if args.json:
        _say(json.dumps(me, indent=2, sort_keys=True))
        return 0
    _say(f"{me['user']['username']} on {session.server}")
    for membership in me.get("memberships", []):
        org = membership["org"]
        marker = " *" if org["slug"] == session.org else ""
        _say(f"  {org['slug']}: {membership['role']['name']}{marker}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferia", description="Sign in to Inferia and get short-lived tokens."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    login = commands.add_parser("login", help="sign in through the browser (device flow)")
    login.add_argument("--server", required=True, help="the Inferia server, e.g. https://...")
    login.add_argument("--org", default="", help="organization slug to use by default")
    login.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help=argparse.SUPPRESS)
    login.add_argument(
        "--store",
        choices=[STORE_KEYRING, STORE_FILE],
        default=None,
        help="where to keep the refresh token (default: the OS keyring when usable)",
    )
    login.add_argument(
        "--open-browser", action="store_true", help="open the approval page in a browser"
    )
    login.set_defaults(handler=cmd_login)

    for name, handler, text in (
        ("logout", cmd_logout, "end the login on the server and forget it here"),
        ("token", cmd_token, "print a fresh access token"),
        ("whoami", cmd_whoami, "show the signed-in user and organizations"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--server", default=None, help="which login (default: the last one)")
        if name == "whoami":
            sub.add_argument("--json", action="store_true", help="the server's answer as JSON")
        sub.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (CredentialsError, LoginFailed) as exc:
        _warn(str(exc))
        return 1
    except KeyboardInterrupt:
        _warn("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``python -m gateway accounts ...``: add Google accounts and look after the accounts file.

Every change goes through the store's locked read-modify-write, so the CLI can run while the gateway serves:
neither loses the other's changes, and the gateway picks the new state up within a second or two.
"""

from __future__ import annotations

import argparse
import sys
import time
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

from . import config
from .accounts import oauth
from .accounts.credentials import InvalidGrant, TokenRefreshFailed
from .accounts.limits import aligned, in_parallel
from .accounts.pool import Account, build_account, iso
from .accounts.store import AccountsFileError, account_entries, read_accounts_file, update_accounts_file
from .upstream.client import CloudCodeClient
from .upstream.errors import UpstreamConnectionError, UpstreamHTTPError

# How long `accounts add` waits for the browser to come back.
BROWSER_TIMEOUT = 300.0


class CommandError(Exception):
    """A command cannot do what was asked; the message is for the user."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        settings = config.Settings.from_env()
        return args.run(settings, args)
    except (CommandError, oauth.OAuthError, AccountsFileError, config.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Cloud Code Gateway administration.")
    commands = parser.add_subparsers(title="commands")
    accounts = commands.add_parser("accounts", help="manage the Google accounts in the accounts file")
    actions = accounts.add_subparsers(title="actions", required=True, dest="action")

    add_parser = actions.add_parser("add", help="sign in with Google and add (or renew) an account")
    add_parser.add_argument("--no-browser", action="store_true",
                            help="print the URL and read the redirect URL or code from stdin (SSH, Docker)")
    add_parser.add_argument("--login-hint", metavar="EMAIL", help="the Google account to preselect")
    add_parser.add_argument("--timeout", type=float, default=BROWSER_TIMEOUT,
                            help="seconds to wait for the browser (default %(default).0f)")
    add_parser.set_defaults(run=add)

    actions.add_parser("list", help="show the accounts and their state").set_defaults(run=list_accounts)
    actions.add_parser("verify", help="refresh every token and report which work").set_defaults(run=verify)
    for name, run, text in (
        ("remove", remove, "remove an account"),
        ("enable", enable, "put an account back into rotation"),
        ("disable", disable, "keep an account but stop using it"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("email")
        action.set_defaults(run=run)
    return parser


# -- add ---------------------------------------------------------------------------------------------


def add(settings: config.Settings, args: argparse.Namespace) -> int:
    if args.no_browser:
        auth, code = _authorize_by_paste(settings, args.login_hint)
    else:
        auth, code = _authorize_in_browser(settings, args.login_hint, args.timeout)
    session = requests.Session()
    tokens = oauth.exchange_code(settings, auth, code, session)
    email = oauth.fetch_email(settings, tokens["access_token"], session)
    project = _discover_project(settings, email, tokens["refresh_token"])
    added = _save_account(settings.accounts_file, email, tokens["refresh_token"], project)
    verb = "Added" if added else "Renewed"
    print(f"{verb} {email} (project {project or 'to be discovered on first use'}) in {settings.accounts_file}")
    return 0


def _authorize_in_browser(
    settings: config.Settings, login_hint: str | None, timeout: float
) -> tuple[oauth.Authorization, str]:
    with oauth.LoopbackReceiver(settings.oauth_redirect_port) as receiver:
        auth = receiver.authorize(settings, login_hint)
        _say(f"Opening the browser to sign in with Google. If it does not open, visit:\n\n{auth.url}\n")
        webbrowser.open(auth.url)
        _say(f"Waiting for the browser to come back to {receiver.redirect_uri} ...")
        return auth, receiver.wait(auth.state, timeout)


def _authorize_by_paste(settings: config.Settings, login_hint: str | None) -> tuple[oauth.Authorization, str]:
    # Nothing listens: the browser's last page fails to load, and its address carries the code.
    port = settings.oauth_redirect_port or config.OAUTH_REDIRECT_PORT
    auth = oauth.start(settings, oauth.redirect_uri(port), login_hint)
    _say(f"Open this URL in a browser on any machine and sign in with Google:\n\n{auth.url}\n")
    _say("The browser then fails to load a localhost page. Paste that page's address (or just the code):")
    line = sys.stdin.readline()
    if not line:
        raise CommandError("no input: paste the redirect URL or the code")
    return auth, oauth.code_from_paste(line, auth.state)


def _discover_project(settings: config.Settings, email: str, refresh_token: str) -> str | None:
    """The account's Cloud Code project (onboarding it if needed); None leaves it to the gateway."""
    account = build_account({"email": email, "refreshToken": refresh_token}, settings)
    try:
        return CloudCodeClient(settings).discover_project(account)[0]
    except (InvalidGrant, TokenRefreshFailed, UpstreamHTTPError, UpstreamConnectionError) as exc:
        _say(f"warning: could not discover the Cloud Code project now ({exc}); the gateway will on first use")
        return None


def _save_account(path: Path, email: str, refresh_token: str, project: str | None) -> bool:
    """Add the account, or renew its token if it is there (clearing an invalid mark); True if new."""
    added = False

    def change(data: dict[str, Any]) -> None:
        nonlocal added
        entry = _entry(data, email)
        if entry is None:
            added = True
            entry = {"email": email, "source": "oauth", "enabled": True, "addedAt": iso(time.time())}
            data["accounts"].append(entry)
        entry.update(refreshToken=refresh_token, enabled=True, isInvalid=False, invalidReason=None)
        if project:
            entry["projectId"] = project

    update_accounts_file(path, change)
    return added


def _entry(data: dict[str, Any], email: str) -> dict[str, Any] | None:
    return next((e for e in data["accounts"] if isinstance(e, dict) and e.get("email") == email), None)


# -- list, remove, enable, disable -------------------------------------------------------------------------


def list_accounts(settings: config.Settings, args: argparse.Namespace) -> int:
    path = settings.accounts_file
    entries = [e for e in read_accounts_file(path)["accounts"] if isinstance(e, dict) and e.get("email")]
    if not entries:
        print(f"No accounts in {path}. Add one with: python -m gateway accounts add")
        return 0
    rows = [["Email", "Enabled", "Project", "Status"]]
    rows += [[e["email"], "yes" if e.get("enabled", True) is not False else "no",
              e.get("projectId") or "-", _status(e)] for e in entries]
    print(f"Accounts in {path}:\n")
    print("\n".join(aligned(rows)))
    return 0


def _status(entry: dict[str, Any]) -> str:
    if not entry.get("refreshToken"):
        return "no refresh token (re-add it)"
    if entry.get("isInvalid"):
        return f"invalid: {entry.get('invalidReason') or 'refresh token rejected'}"
    if entry.get("enabled", True) is False:
        return "disabled"
    return "ok"


def remove(settings: config.Settings, args: argparse.Namespace) -> int:
    def change(data: dict[str, Any]) -> None:
        data["accounts"] = [e for e in data["accounts"] if not (isinstance(e, dict) and e.get("email") == args.email)]

    _change(settings.accounts_file, args.email, change)
    print(f"Removed {args.email}")
    return 0


def enable(settings: config.Settings, args: argparse.Namespace) -> int:
    _change(settings.accounts_file, args.email, lambda data: _entry(data, args.email).update(enabled=True))
    print(f"Enabled {args.email}")
    return 0


def disable(settings: config.Settings, args: argparse.Namespace) -> int:
    _change(settings.accounts_file, args.email, lambda data: _entry(data, args.email).update(enabled=False))
    print(f"Disabled {args.email}")
    return 0


def _change(path: Path, email: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` under the file lock, refusing (without writing) when the account is not there."""

    def checked(data: dict[str, Any]) -> None:
        if _entry(data, email) is None:
            raise CommandError(f"no account {email} in {path} (see `python -m gateway accounts list`)")
        change(data)

    update_accounts_file(path, checked)


# -- verify -----------------------------------------------------------------------------------------------


def verify(settings: config.Settings, args: argparse.Namespace) -> int:
    """Refresh every token and ask userinfo whose it is; record in the file which accounts are invalid."""
    path = settings.accounts_file
    accounts = [build_account(entry, settings) for entry in account_entries(read_accounts_file(path))]
    if not accounts:
        print(f"No accounts in {path}. Add one with: python -m gateway accounts add")
        return 0
    results: dict[str, tuple[str | None, bool]] = {}

    def check(account: Account) -> None:
        try:
            account.tokens.force_refresh()
            owner = oauth.fetch_email(settings, account.tokens.token(), account.session)
            problem = None if owner == account.email else f"the token belongs to {owner}"
            results[account.email] = (problem, False)
        except InvalidGrant as exc:
            results[account.email] = (f"refresh token rejected: {exc}", True)
        except (TokenRefreshFailed, oauth.OAuthError, requests.RequestException) as exc:
            results[account.email] = (str(exc), False)

    in_parallel(accounts, check)
    for account in accounts:
        problem, _ = results[account.email]
        print(f"OK    {account.email}" if problem is None else f"FAIL  {account.email}: {problem}")
    _record_validity(path, results)
    return 0 if all(problem is None for problem, _ in results.values()) else 1


def _record_validity(path: Path, results: dict[str, tuple[str | None, bool]]) -> None:
    """Mark rejected tokens invalid and clear the mark of working ones; other failures may pass."""

    def change(data: dict[str, Any]) -> None:
        for email, (problem, rejected) in results.items():
            entry = _entry(data, email)
            if entry is None:
                continue
            if rejected:
                entry.update(isInvalid=True, invalidReason=problem, invalidAt=iso(time.time()))
            elif problem is None and entry.get("isInvalid"):
                entry.update(isInvalid=False, invalidReason=None)

    update_accounts_file(path, change)


def _say(text: str) -> None:
    """Progress for the person at the terminal, flushed at once (the URL must show before we block)."""
    print(text, flush=True)

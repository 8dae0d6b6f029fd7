"""``python -m gateway accounts ...``: add Google accounts and look after the accounts file.

Every change goes through the store's locked read-modify-write, so the CLI can run while the gateway serves:
neither loses the other's changes, and the gateway picks the new state up within a second or two.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from .accounts.limits import WINDOWS_LEGEND, aligned, in_parallel, short_names, window_entries, windows_rows
from .accounts.pool import (
    CLEAR_SUSPENSION,
    CLEAR_VERIFICATION,
    Account,
    build_account,
    iso,
    parse_windows,
    suspension_fields,
    verification_fields,
)
from .accounts.refusals import SUSPENDED, account_refusal
from .accounts.store import (
    AccountsFileError,
    AccountsSource,
    FileSource,
    account_entries,
    export_line,
    open_source,
    read_accounts_file,
)
from .state import open_store
from .upstream.client import CloudCodeClient
from .upstream.errors import UpstreamConnectionError, UpstreamHTTPError

# How long `accounts add` waits for the browser to come back.
BROWSER_TIMEOUT = 300.0
# Longest upstream silence `accounts list` and `verify` wait through for one account.
LIST_TIMEOUT = 15.0


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

    actions.add_parser("export", help="print the accounts file as one line for GATEWAY_ACCOUNTS_JSON").set_defaults(
        run=export)
    list_parser = actions.add_parser("list", help="show the accounts, their state and quota windows")
    list_parser.add_argument("--offline", action="store_true",
                             help="only what the accounts file says: do not ask Google for the quota windows")
    list_parser.set_defaults(run=list_accounts)
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
    if settings.accounts_json:
        raise CommandError("GATEWAY_ACCOUNTS_JSON is set: add the account to a file (unset the variable), then put "
                           "the output of `python -m gateway accounts export` into the variable")
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

    FileSource(path).update(change)
    return added


def _entry(data: dict[str, Any], email: str) -> dict[str, Any] | None:
    return next((e for e in data["accounts"] if isinstance(e, dict) and e.get("email") == email), None)


# -- list, remove, enable, disable -------------------------------------------------------------------------


def list_accounts(settings: config.Settings, args: argparse.Namespace) -> int:
    source = accounts_source(settings)
    entries = [e for e in source.read()["accounts"] if isinstance(e, dict) and e.get("email")]
    if not entries:
        print(f"No accounts in {source.description}. Add one with: python -m gateway accounts add")
        return 0
    rows = [["Email", "Enabled", "Project", "Status"]]
    rows += [[e["email"], "yes" if e.get("enabled", True) is not False else "no",
              e.get("projectId") or "-", _status(e)] for e in entries]
    print(f"Accounts in {source.description}:\n")
    print("\n".join(aligned(rows)))
    if not args.offline:
        _print_windows(settings, entries)
    return 0


def _print_windows(settings: config.Settings, entries: list[dict[str, Any]]) -> None:
    """Each usable account's 5-hour and weekly quota windows, asked of the upstream now (in parallel)."""
    client = _quick_client(settings)
    usable = [build_account(e, settings) for e in entries if e.get("refreshToken") and _status(e) == "ok"]
    now = time.time()
    windows: dict[str, list[dict[str, Any]] | None] = {}

    def ask(account: Account) -> None:
        try:
            summary = client.fetch_quota_summary(account)
        except (InvalidGrant, TokenRefreshFailed, UpstreamHTTPError, UpstreamConnectionError):
            return
        windows[account.email] = window_entries(parse_windows(summary), now) if summary is not None else None

    in_parallel(usable, ask)
    asked = {account.email for account in usable}
    # "?": asked, no answer; "-": not asked (the status says why).
    blocked = [None if e["email"] in windows else "?" if e["email"] in asked else "-" for e in entries]
    names = short_names([e["email"] for e in entries])
    rows = windows_rows(names, [windows.get(e["email"]) for e in entries], blocked)
    if len(rows) == 1:
        print("\nQuota windows: unavailable (the upstream did not answer for any usable account)")
        return
    print("\n" + "\n".join(aligned(rows)))
    print(f"\nWindows: {WINDOWS_LEGEND}")


def _status(entry: dict[str, Any]) -> str:
    if not entry.get("refreshToken"):
        return "no refresh token (re-add it)"
    if entry.get("isInvalid"):
        return f"invalid: {entry.get('invalidReason') or 'refresh token rejected'}"
    if entry.get("isSuspended"):
        return _suspended(entry["email"], entry.get("suspendedReason") or "by Google")
    if entry.get("needsVerification"):
        return _unverified(entry.get("validationUrl"))
    if entry.get("enabled", True) is False:
        return "disabled"
    return "ok"


def remove(settings: config.Settings, args: argparse.Namespace) -> int:
    def change(data: dict[str, Any]) -> None:
        data["accounts"] = [e for e in data["accounts"] if not (isinstance(e, dict) and e.get("email") == args.email)]

    _change(accounts_source(settings), args.email, change)
    print(f"Removed {args.email}")
    return 0


def enable(settings: config.Settings, args: argparse.Namespace) -> int:
    """Back into rotation: undoes `disable`, and lifts a suspension (the user's call: Google may ban it again)."""
    lifted = False

    def change(data: dict[str, Any]) -> None:
        nonlocal lifted
        entry = _entry(data, args.email)
        lifted = entry.get("isSuspended") is True
        entry.update(enabled=True, **(CLEAR_SUSPENSION if lifted else {}))

    _change(accounts_source(settings), args.email, change)
    print(f"Enabled {args.email}" + (" (its suspension is lifted)" if lifted else ""))
    return 0


def disable(settings: config.Settings, args: argparse.Namespace) -> int:
    _change(accounts_source(settings), args.email, lambda data: _entry(data, args.email).update(enabled=False))
    print(f"Disabled {args.email}")
    return 0


def _change(source: AccountsSource, email: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` under the file lock, refusing (without writing) when the account is not there."""

    def checked(data: dict[str, Any]) -> None:
        if _entry(data, email) is None:
            raise CommandError(f"no account {email} in {source.description} (see `python -m gateway accounts list`)")
        change(data)

    source.update(checked)


# -- verify -----------------------------------------------------------------------------------------------


def verify(settings: config.Settings, args: argparse.Namespace) -> int:
    """Refresh every token, ask userinfo whose it is and the upstream whether the account may serve; record
    in the file which accounts are invalid, suspended or waiting for verification, and clear what no longer is."""
    source = accounts_source(settings)
    accounts = [build_account(entry, settings) for entry in account_entries(source.read())]
    if not accounts:
        print(f"No accounts in {source.description}. Add one with: python -m gateway accounts add")
        return 0
    client = _quick_client(settings)
    results: dict[str, tuple[str | None, dict[str, Any]]] = {}

    def check(account: Account) -> None:
        results[account.email] = _check(settings, client, account)

    in_parallel(accounts, check)
    for account in accounts:
        problem, _ = results[account.email]
        print(f"OK    {account.email}" if problem is None else f"FAIL  {account.email}: {problem}")
    _record_marks(source, {email: marks for email, (_, marks) in results.items()})
    return 0 if all(problem is None for problem, _ in results.values()) else 1


def _check(settings: config.Settings, client: CloudCodeClient, account: Account) -> tuple[str | None, dict[str, Any]]:
    """What is wrong with the account (None: nothing), and the marks to set or clear in its entry."""
    now = time.time()
    try:
        account.tokens.force_refresh()
        owner = oauth.fetch_email(settings, account.tokens.token(), account.session)
    except InvalidGrant as exc:
        reason = f"refresh token rejected: {exc}"
        return reason, {"isInvalid": True, "invalidReason": reason, "invalidAt": iso(now)}
    except (TokenRefreshFailed, oauth.OAuthError, requests.RequestException) as exc:
        return str(exc), {}
    if owner != account.email:
        return f"the token belongs to {owner}", {}
    valid = {"isInvalid": False, "invalidReason": None}
    try:
        client.fetch_available_models(account)  # cheap, and refused like a generate call when Google objects
    except UpstreamHTTPError as exc:
        refusal = account_refusal(exc)
        if refusal is None:
            return f"the Cloud Code API answered: {exc}", valid
        if refusal.kind == SUSPENDED:
            return _suspended(account.email, refusal.message), {**valid, **suspension_fields(refusal.message, now)}
        return _unverified(refusal.url), {**valid, **verification_fields(refusal.url, refusal.message, now)}
    except (TokenRefreshFailed, UpstreamConnectionError) as exc:
        return str(exc), valid
    if account.suspended_reason is not None:  # only `enable` lifts a ban
        return _suspended(account.email, account.suspended_reason), {**valid, **CLEAR_VERIFICATION}
    return None, {**valid, **CLEAR_VERIFICATION}


def _record_marks(source: AccountsSource, marks: dict[str, dict[str, Any]]) -> None:
    """Set the marks found and clear those that no longer hold; an entry without a mark gains no field."""

    def change(data: dict[str, Any]) -> None:
        for email, fields in marks.items():
            entry = _entry(data, email)
            if entry is None:
                continue
            entry.update({key: value for key, value in fields.items() if value not in (None, False) or entry.get(key)})

    source.update(change)


def _quick_client(settings: config.Settings) -> CloudCodeClient:
    """A client for a person waiting at the terminal: a silent upstream must not hold a command for the
    generation read timeout."""
    return CloudCodeClient(dataclasses.replace(settings, read_timeout=min(settings.read_timeout, LIST_TIMEOUT)))


def _suspended(email: str, reason: str) -> str:
    return f"suspended: {reason} (`python -m gateway accounts enable {email}` to use it again)"


def _unverified(url: str | None) -> str:
    return f"needs verification: open {url or 'the link Google sent'}, then run `python -m gateway accounts verify`"


def export(settings: config.Settings, args: argparse.Namespace) -> int:
    """The accounts file as the one-line value of GATEWAY_ACCOUNTS_JSON (for a PaaS config var)."""
    data = read_accounts_file(settings.accounts_file)
    if not account_entries(data):
        raise CommandError(f"no accounts in {settings.accounts_file} to export")
    print(export_line(data))
    return 0


def accounts_source(settings: config.Settings) -> AccountsSource:
    """The accounts the server reads: GATEWAY_ACCOUNTS_JSON (overrides in the shared state) or the file."""
    state = open_store(settings.redis_url, settings.shared_state_dir)
    return open_source(settings.accounts_json, settings.accounts_file, state, shared=bool(settings.redis_url))


def _say(text: str) -> None:
    """Progress for the person at the terminal, flushed at once (the URL must show before we block)."""
    print(text, flush=True)

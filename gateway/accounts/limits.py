"""Every account's quota per model, for ``GET /account-limits``: gathered, then shown as JSON or a table.

The upstream's model listing gives the remaining fraction and the reset time per model, its quota summary the
5-hour and weekly windows per model group; the pool adds what the gateway itself knows (its cooldowns after
429s, accounts marked invalid, disabled ones). Accounts are asked in parallel, so the report takes as long as
the slowest account, not the sum. Accounts Google refused, and models served from AI credits, are marked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..upstream.client import CloudCodeClient
from ..upstream.errors import UpstreamConnectionError, UpstreamHTTPError
from . import credits
from .credentials import InvalidGrant, TokenRefreshFailed
from .pool import Account, AccountPool, Quota, QuotaGroup, epoch, iso
from .refusals import NEEDS_VERIFICATION, SUSPENDED, note_refusal

log = logging.getLogger(__name__)

RULE = "\u2500"
LEGEND = ("quota remaining (time until it resets); 'limited' is the gateway's own cooldown after a 429; 'credits': "
          "out of quota, served from AI credits.")
WINDOWS_LEGEND = "quota left in each model group's 5-hour and weekly window (time until it resets)."
WINDOW_NAMES = (("fiveHour", "5 hours"), ("weekly", "weekly"))
# Widest account column in the model table; longer names are cut.
NAME_WIDTH = 26


def in_parallel(accounts: list[Account], work: Callable[[Account], None]) -> None:
    """Run ``work`` for every account at once (plain threads: greenlets under gevent's patching)."""
    threads = [threading.Thread(target=work, args=(account,), daemon=True) for account in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def account_limits(pool: AccountPool, client: CloudCodeClient) -> dict[str, Any]:
    """The report: per account its state, the gateway's cooldowns, and the upstream's quota per model."""
    pool.reload_if_changed()
    accounts = list(pool.accounts)
    errors: dict[str, str] = {}

    def fetch(account: Account) -> None:
        if not account.usable():
            return
        try:
            pool.record_quotas(account, client.fetch_available_models(account))
        except InvalidGrant as exc:
            pool.mark_invalid(account, f"refresh token rejected: {exc}")
        except UpstreamHTTPError as exc:
            if note_refusal(pool, account, exc) is None:
                errors[account.email] = str(exc)
        except (TokenRefreshFailed, UpstreamConnectionError) as exc:
            errors[account.email] = str(exc)
        else:
            refresh_windows(pool, client, account)

    in_parallel(accounts, fetch)
    now = time.time()
    entries = [_account_entry(account, errors.get(account.email), now) for account in accounts]
    models = sorted({model for account in accounts for model in account.quotas})
    for entry, account in zip(entries, accounts):
        entry["limits"] = {model: _limit(account.quotas.get(model), now) for model in models}
        entry["quotaWindows"] = window_entries(account.windows, now)
        entry["servingFromCredits"], entry["aiCredits"] = _credits(account, now)
    counts = {status: sum(1 for e in entries if e["status"] == status) for status in _STATUSES}
    return {
        "timestamp": iso(now),
        "totalAccounts": len(entries),
        "available": sum(1 for a in accounts if a.usable()),
        "rateLimited": counts["rate-limited"],
        "invalid": counts["invalid"],
        "disabled": counts["disabled"],
        "needsVerification": counts[NEEDS_VERIFICATION],
        "suspended": counts[SUSPENDED],
        "aiCredits": client.settings.ai_credits,
        "models": models,
        "accounts": entries,
    }


def refresh_windows(pool: AccountPool, client: CloudCodeClient, account: Account) -> None:
    """Ask for the account's quota windows. A failure keeps what was known (its reset times still hold); an
    upstream without the method leaves them unknown, and everything works from the model listing alone."""
    try:
        pool.record_windows(account, client.fetch_quota_summary(account))
    except (InvalidGrant, TokenRefreshFailed, UpstreamHTTPError, UpstreamConnectionError) as exc:
        log.info("quota windows of %s unavailable: %s", account.label, exc)


def _credits(account: Account, now: float) -> tuple[bool, dict[str, Any]]:
    """Whether the account serves a model from its AI credits now; which, until when; and their last failure."""
    serving = sorted(credits.serving(account, now).items())
    failed = account.credits_failed_at
    return bool(serving), {
        "serving": {model: {"until": iso(until), "inSeconds": round(until - now)} for model, until in serving},
        "failedAt": iso(failed),
        "error": account.credits_error if failed is not None else None,
        "retryInSeconds": max(0, round(failed + credits.FAILED_PAUSE - now)) if failed is not None else None,
    }


def window_entries(groups: list[QuotaGroup] | None, now: float) -> list[dict[str, Any]] | None:
    """The windows of each model group, in the shape of a model's limit; None when unknown."""
    if groups is None:
        return None
    return [
        {"group": group.name, "models": list(group.models),
         "fiveHour": _limit(group.five_hour, now), "weekly": _limit(group.weekly, now)}
        for group in groups
    ]


_STATUSES = ("ok", "rate-limited", "invalid", SUSPENDED, NEEDS_VERIFICATION, "disabled", "error")


def _account_entry(account: Account, error: str | None, now: float) -> dict[str, Any]:
    cooldowns = account.active_cooldowns(now)
    if account.invalid_reason:
        status = "invalid"
    elif account.suspended_reason is not None:
        status, error = SUSPENDED, account.suspended_reason
    elif account.needs_verification:
        status = NEEDS_VERIFICATION
        error = f"Google wants the account verified: open {account.verification_url or 'the link Google sent'}"
    elif not account.enabled:
        status = "disabled"
    elif error:
        status = "error"
    elif cooldowns:
        status = "rate-limited"
    else:
        status = "ok"
    return {
        "email": account.email,
        "status": status,
        "error": error or account.invalid_reason,
        "enabled": account.enabled,
        "validationUrl": account.verification_url if account.needs_verification else None,
        "projectId": account.project_id,
        "lastUsed": iso(account.last_used),
        "modelRateLimits": {
            model: {"resetTime": iso(now + left), "waitSeconds": round(left, 1)}
            for model, left in sorted(cooldowns.items())
        },
    }


def _limit(quota: Quota | None, now: float) -> dict[str, Any] | None:
    if quota is None:
        return None
    reset_at = quota.reset_at
    return {
        "remaining": f"{round((quota.fraction or 0.0) * 100)}%",
        "remainingFraction": quota.fraction,
        "resetTime": quota.reset_time,
        "resetInSeconds": max(0, round(reset_at - now)) if reset_at is not None else None,
    }


# -- the table ----------------------------------------------------------------------------------------


def limits_table(report: dict[str, Any]) -> str:
    """The report as aligned tables a person reads in a terminal: accounts, quota windows, models x accounts."""
    accounts = report["accounts"]
    names = short_names([a["email"] for a in accounts])
    lines = [
        f"Account limits ({report['timestamp']})",
        f"Accounts: {report['totalAccounts']} total, {report['available']} available, "
        f"{report['rateLimited']} rate-limited, {report['invalid']} invalid, {report['disabled']} disabled, "
        f"{report['needsVerification']} needing verification, {report['suspended']} suspended",
        "",
    ]
    rows = [["Account", "Status", "Project", "Last used"]]
    notes: dict[int, str] = {}
    for index, (name, account) in enumerate(zip(names, accounts), start=1):
        rows.append([name, account["status"], account["projectId"] or "-", _ago(account["lastUsed"], report)])
        said = []
        if account["status"] in ("invalid", "error", SUSPENDED, NEEDS_VERIFICATION) and account["error"]:
            said.append(account["error"])
        said += _credit_notes(account["aiCredits"])
        if said:
            notes[index] = "\n".join(f"  \u2514\u2500 {text}" for text in said)
    lines += aligned(rows, notes)
    rows = windows_rows(names, [a["quotaWindows"] for a in accounts],
                        [f"[{a['status']}]" if a["status"] in _BLOCKED else None for a in accounts])
    if len(rows) > 1:
        lines += ["", *aligned(rows), "", f"Windows: {WINDOWS_LEGEND}"]
    if report["models"]:
        lines.append("")
        rows = [["Model", *names]]
        rows += [[model, *(_cell(account, model) for account in accounts)] for model in report["models"]]
        lines += aligned(rows)
        lines += ["", f"Cells: {LEGEND}"]
    return "\n".join(lines) + "\n"


def _credit_notes(state: dict[str, Any]) -> list[str]:
    notes = [f"serving {model} from AI credits (its quota resets in {duration(serving['inSeconds'])})"
             for model, serving in state["serving"].items()]
    if state["retryInSeconds"]:
        notes.append(f"AI credits failed: {state['error']} (not tried again for {duration(state['retryInSeconds'])})")
    return notes


def windows_rows(names: list[str], windows: list[list[dict[str, Any]] | None],
                 blocked: list[str | None]) -> list[list[str]]:
    """Rows of a (model group, window) x accounts table; ``blocked`` fills the column of an account that
    cannot serve. Only the header row when no account has windows."""
    groups = list(dict.fromkeys(g["group"] for known in windows for g in known or ()))
    rows = [["Quota window", *names]]
    for group in groups:
        for key, label in WINDOW_NAMES:
            cells = []
            for known, block in zip(windows, blocked):
                entry = next((g for g in known or () if g["group"] == group), None)
                cells.append(block or (_quota_cell(entry[key]) if entry else "-"))
            rows.append([f"{group} ({label})", *cells])
    return rows


def _ago(moment: str | None, report: dict[str, Any]) -> str:
    used, now = epoch(moment), epoch(report["timestamp"])
    if used is None or now is None:
        return "never"
    return f"{duration(max(0.0, now - used))} ago"


_BLOCKED = ("invalid", "disabled", "error", SUSPENDED, NEEDS_VERIFICATION)


def _cell(account: dict[str, Any], model: str) -> str:
    if account["status"] in _BLOCKED:
        return f"[{account['status']}]"
    cooldown = account["modelRateLimits"].get(model)
    if cooldown is not None:
        return f"limited ({duration(cooldown['waitSeconds'])})"
    serving = account["aiCredits"]["serving"].get(model)
    if serving is not None:
        return f"credits ({duration(serving['inSeconds'])})"
    group = next((g for g in account["quotaWindows"] or () if model in g["models"]), None)
    for key, label in (("weekly", "weekly "), ("fiveHour", "")):  # an empty window says more than the listing
        window = group and group[key]
        if window and not window["remainingFraction"] and window["resetInSeconds"]:
            return f"0% {label}(wait {duration(window['resetInSeconds'])})"
    return _quota_cell(account["limits"].get(model))


def _quota_cell(limit: dict[str, Any] | None) -> str:
    if limit is None:
        return "-"
    left = limit["resetInSeconds"]
    if not limit["remainingFraction"]:
        return f"0% (wait {duration(left)})" if left else "0% (exhausted)"
    return f"{limit['remaining']} ({duration(left)})" if left is not None else limit["remaining"]


def duration(seconds: float) -> str:
    """``3d4h``, ``4h35m``, ``12m5s``, ``42s``: as precise as a person needs."""
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24}d{hours % 24}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def short_names(emails: list[str]) -> list[str]:
    """Local parts of the emails, or the whole email where two accounts share a local part."""
    locals_ = [email.split("@", 1)[0] for email in emails]
    names = [local if locals_.count(local) == 1 else email for local, email in zip(locals_, emails)]
    return [name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "\u2026" for name in names]


def aligned(rows: list[list[str]], notes: dict[int, str] | None = None) -> list[str]:
    """Rows padded into columns, a rule under the header, and a note line under some rows."""
    notes = notes or {}
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for index, row in enumerate(rows):
        out.append("   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            out.append(RULE * (sum(widths) + 3 * (len(widths) - 1)))
        if index in notes:
            out.append(notes[index])
    return out

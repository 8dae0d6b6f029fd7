"""A strict fake of Google's Cloud Code (``v1internal``) API and OAuth endpoints.

The gateway's tests talk to this server over a real loopback socket. It is
deliberately *strict*: it rejects what Google rejects (unknown JSON fields,
unsupported JSON-Schema keywords, broken tool pairing, forged or misplaced
thinking signatures, ...) with Google-shaped errors, because a lenient fake
would agree with the gateway's bugs. Section names in comments refer to
``docs/upstream.md``.

Try the gateway by hand with ``python -m tests.fake_cloudcode --port 9100``.
Only the standard library is used, so the fake runs anywhere the tests run.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import hashlib
import hmac
import json
import os
import re
import secrets
import select
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

SENTINEL_SIGNATURE = "skip_thought_signature_validator"
GENERATE_METHODS = ("streamGenerateContent", "generateContent")
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
DOMAIN = "cloudcode-pa.googleapis.com"
SCOPES = " ".join(
    "https://www.googleapis.com/auth/" + s
    for s in ("cloud-platform", "userinfo.email", "userinfo.profile", "cclog", "experimentsandconfigs")
)


ANTHROPIC, GOOGLE, OPENAI = "MODEL_PROVIDER_ANTHROPIC", "MODEL_PROVIDER_GOOGLE", "MODEL_PROVIDER_OPENAI"
# The client version the upstream asks of every caller, and the one below which it resolves none of the models
# released since August 2026 (docs/upstream.md, "Client version").
MIN_CLIENT_VERSION = "2.0.1"
NEW_MODEL_CLIENT_VERSION = "2.9.0"
LEVELS = ("minimal", "low", "medium", "high")
VERSION_REFUSED = "This version of Antigravity is no longer supported. Please update to receive the latest features!"
# Account-level refusals (docs/upstream.md, "Account errors").
TOS_BANNED = "This service has been disabled in this account for violation of Terms of Service."
VALIDATION_MESSAGE = "Verify your account to continue using Antigravity."
HELP = "type.googleapis.com/google.rpc.Help"
# Quota windows (docs/upstream.md, "Quota windows"): the fake's window names, their proto Duration on the wire.
WINDOWS = {"5h": ("18000s", "5-hour limit", timedelta(hours=5)),
           "weekly": ("604800s", "Weekly limit", timedelta(days=7))}
# group -> (displayName, the model ids it covers): one group per model line, as the Antigravity quota panel shows.
QUOTA_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "claude": ("Claude and GPT-OSS", ("claude-sonnet-4-6", "claude-opus-4-6-thinking", "gpt-oss-120b-medium")),
    "gemini-pro": ("Gemini Pro", ("gemini-pro-agent", "gemini-3.1-pro-low")),
    "gemini-flash": ("Gemini Flash", ("gemini-3-flash-agent", "gemini-3.8-flash-tiered", "gemini-3.1-flash-lite")),
}
# AI credits (docs/upstream.md, "AI credits"): the only credit type, and what one generate call costs.
CREDIT_TYPES = frozenset({"GOOGLE_ONE_AI"})
CREDITS_PER_CALL = 50


def _model(display: str, max_tokens: int, max_output: int, thinking: bool, provider: str = GOOGLE,
           **extra: Any) -> dict[str, Any]:
    """A listing entry. Keys starting with an underscore are the fake's own rules, never listed."""
    return {
        "displayName": display,
        "maxTokens": max_tokens,
        "maxOutputTokens": max_output,
        "supportsThinking": thinking,
        "supportsImages": True,
        "modelProvider": provider,
        **extra,
    }


# The catalog as of late 2026 (docs/upstream.md, "Models"): the January ids are retired and listed only as
# deprecated ids with their successors; Flash 3.8 is served as one ``-tiered`` id with the tier as thinking level.
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "claude-sonnet-4-6": _model("Claude Sonnet 4.6", 200_000, 64_000, False, ANTHROPIC),
    "claude-opus-4-6-thinking": _model("Claude Opus 4.6 (Thinking)", 200_000, 64_000, True, ANTHROPIC,
                                       thinkingBudget=1024),
    "gemini-3-flash-agent": _model("Gemini 3 Flash", 1_048_576, 65_536, True,
                                   _levels=LEVELS, _search=True),
    "gemini-pro-agent": _model("Gemini 3.1 Pro (High)", 1_048_576, 65_536, True, _levels=("low", "high")),
    "gemini-3.1-pro-low": _model("Gemini 3.1 Pro (Low)", 1_048_576, 65_536, True, _levels=("low", "high")),
    "gemini-3.8-flash-tiered": _model("Gemini 3.8 Flash", 1_048_576, 65_536, True,
                                      _levels=("low", "medium", "high"), _min_version=NEW_MODEL_CLIENT_VERSION),
    "gemini-3.1-flash-lite": _model("Gemini 3.1 Flash Lite", 1_048_576, 65_536, True, _levels=LEVELS),
    "gpt-oss-120b-medium": _model("GPT-OSS 120B (Medium)", 131_072, 32_768, False, OPENAI, supportsImages=False),
    "chat_20706": {**_model("chat_20706", 0, 0, False), "supportsImages": False, "_internal": True},
}
DEFAULT_DEPRECATIONS: dict[str, str] = {
    "claude-opus-4-5-thinking": "claude-opus-4-6-thinking",
    "claude-sonnet-4-5": "claude-sonnet-4-6",
    "claude-sonnet-4-5-thinking": "claude-sonnet-4-6",
    "claude-sonnet-4-6-thinking": "claude-sonnet-4-6",
    "gemini-3-pro-high": "gemini-pro-agent",
    "gemini-3-pro-low": "gemini-3.1-pro-low",
    "gemini-3.1-pro-high": "gemini-pro-agent",
    "gemini-3-flash": "gemini-3-flash-agent",
    "gemini-2.5-flash": "gemini-3.1-flash-lite",
}


def vendor(info: dict[str, Any] | None) -> str:
    """Who made the model: Claude and Gemini differ in signatures, tool ids, validation (docs/upstream.md, "Models");
    an OpenAI model (gpt-oss) takes call ids like Claude and no signatures at all."""
    return (info or {}).get("modelProvider", GOOGLE)


def is_claude_model(info: dict[str, Any] | None) -> bool:
    return vendor(info) == ANTHROPIC


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:4])


def client_version(user_agent: str) -> str | None:
    """``antigravity/2.9.1 linux/amd64``, ``antigravity/hub/2.9.1 ...`` or ``antigravity/cli/2.9.1 ...``."""
    match = re.match(r"antigravity/(?:[a-z]+/)?(\d+(?:\.\d+)*)", user_agent.strip(), re.I)
    return match.group(1) if match else None


def _is_internal(model: str, info: dict[str, Any]) -> bool:
    return bool(info.get("_internal")) or re.match(r"(chat|tab)_", model) is not None


# -- proto3 JSON helpers ------------------------------------------------------


def _camel(key: str) -> str:
    """proto3 JSON accepts ``max_output_tokens`` as well as ``maxOutputTokens``."""
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Read a field under either spelling (camelCase wins, as clients send both)."""
    if not isinstance(obj, dict):
        return default
    if name in obj:
        return obj[name]
    return obj.get(_snake(name), default)


def _b64decode(data: str) -> bytes | None:
    """Decode standard or URL-safe base64, padded or not; None if it is not base64."""
    text = data.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value) is not None)


_SCALARS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "string": ("TYPE_STRING", lambda v: isinstance(v, str)),
    "bool": ("TYPE_BOOL", lambda v: isinstance(v, bool)),
    "int": ("TYPE_INT32", _is_int),
    "number": ("TYPE_FLOAT", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
}


def rough_tokens(text: str) -> int:
    """The fake's token count: about four characters per token, never zero."""
    return len(text) // 4 + 1


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(duration: str) -> float:
    """Parse a Go-style duration such as ``1h12m5.2s`` or ``479.4ms``."""
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    return sum(float(n) * scale[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", duration))


def _after(moment: str | None, now: datetime) -> bool:
    """Whether an RFC 3339 time is still ahead; a missing one never passes."""
    if moment is None:
        return True
    return datetime.fromisoformat(moment.replace("Z", "+00:00")) > now


def _human(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return f"{text}{secs}s"


# -- errors -------------------------------------------------------------------

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
         "or other valid authentication credential. "
         "See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}


class ApiError(Exception):
    """An HTTP error answer. Raised anywhere while a request is handled."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def google_error(
    code: int, message: str | None = None, *, status: str | None = None,
    details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
) -> ApiError:
    """The google.rpc.Status envelope every Google API uses for non-2xx answers (docs/upstream.md, "Errors")."""
    error: dict[str, Any] = {
        "code": code,
        "message": message or _DEFAULT_MESSAGES.get(code, "Unknown error."),
        "status": status or _STATUS_NAMES.get(code, "UNAVAILABLE" if code >= 500 else "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return ApiError(code, {"error": error}, headers)


def invalid(message: str) -> ApiError:
    return google_error(400, message)


def oauth_error(status: int, error: str, description: str) -> ApiError:
    """Google's OAuth endpoints use the flat RFC 6749 shape, not google.rpc.Status (docs/upstream.md, "OAuth")."""
    return ApiError(status, {"error": error, "error_description": description})


def _default_error(method: str, status: int) -> ApiError:
    if method == "token":
        if status == 400:
            return oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        if status == 401:
            return oauth_error(401, "invalid_client", "Unauthorized")
        return oauth_error(status, "internal_failure", "Backend Error")
    return google_error(status)


# -- thought signatures -------------------------------------------------------


class _Signer:
    """Issues thought signatures and recognises them later, as Google does.

    A signature is a random nonce plus an HMAC over (family, nonce, text).
    Claude signatures bind the exact thinking text, so a gateway that edits,
    trims or re-splits thinking on replay is caught. Gemini signatures only
    prove they came from a Gemini answer. They are base64 of bytes, as Google's
    are (``thoughtSignature`` is a proto ``bytes`` field, which the Google SDKs
    decode), starting with a family's own bytes so that the leading letters
    mimic the real encodings, which is how clients tell the families apart
    (docs/upstream.md, "Thought signatures"). Like Google, verification takes
    either base64 alphabet (the python SDK sends them back URL-safe).
    """

    # Three bytes, so the base64 of the whole stays unpadded; their first six bits give the first letter.
    _PREFIX = {"claude": b"\x44\x0c\x01", "gemini": b"\x0a\x24\x01"}

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, family: str, nonce: bytes, text: str) -> bytes:
        message = family.encode() + b"\0" + nonce + text.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def sign(self, family: str, text: str = "") -> str:
        nonce = secrets.token_bytes(16)
        encode = base64.urlsafe_b64encode if family == "claude" else base64.b64encode
        return encode(self._PREFIX[family] + nonce + self._mac(family, nonce, text)).decode()

    def verify(self, family: str, signature: Any, text: str = "") -> bool:
        if not isinstance(signature, str):
            return False
        raw = _b64decode(signature)
        prefix = self._PREFIX[family]
        if raw is None or len(raw) != len(prefix) + 48 or not raw.startswith(prefix):
            return False
        raw = raw[len(prefix):]
        return hmac.compare_digest(raw[16:], self._mac(family, raw[:16], text))


# -- scripted replies -----------------------------------------------------------

_DEFAULT: Any = object()


@dataclass
class _Failure:
    status: int
    reason: str | None
    retry_delay: str | None
    quota_reset_delay: str | None
    quota_reset_timestamp: str | None
    message: str | None
    headers: dict[str, str] | None
    body: Any

    def to_error(self, model: str) -> ApiError:
        """ErrorInfo first, then RetryInfo: some clients read ``details[0]`` only (docs/upstream.md, "Errors")."""
        if self.body is not None:
            return ApiError(self.status, self.body, self.headers)
        details: list[dict[str, Any]] = []
        if self.reason:
            metadata = {"model": model}
            if self.quota_reset_delay:
                metadata["quotaResetDelay"] = self.quota_reset_delay
            if self.quota_reset_timestamp:
                metadata["quotaResetTimeStamp"] = self.quota_reset_timestamp
            details.append({"@type": ERROR_INFO, "reason": self.reason, "domain": DOMAIN, "metadata": metadata})
        if self.retry_delay:
            details.append({"@type": RETRY_INFO, "retryDelay": self.retry_delay})
        return google_error(self.status, self.message or self._message(model), details=details, headers=self.headers)

    def _message(self, model: str) -> str | None:
        if self.reason == "MODEL_CAPACITY_EXHAUSTED":
            return f"No capacity available for model {model} on the server"
        if self.status == 429 and self.reason:
            delay = _seconds(self.quota_reset_delay or self.retry_delay or "0s")
            return f"You have exhausted your capacity on this model. Your quota will reset after {_human(delay)}."
        return None


class Reply:
    """A scripted answer for one generate call, queued with ``FakeCloudCode.enqueue``.

    Content: ``thinking``, ``text`` and ``tool_calls`` (name, args) pairs, in
    that order. Wire behaviour for streams: ``chunks`` deltas per text,
    ``drop_after``/``stall_after`` N events, ``crlf``, ``split_writes`` and
    ``no_final_newline``. ``Reply.text`` and ``Reply.error`` are constructors;
    on an instance, ``reply.text`` is the answer text.

    ``burst`` writes all events at once (with ``stall_after``: the events
    before it in one write, then the pause, then the rest in another).
    """

    def __init__(
        self, *, text: str | None = None, thinking: str | None = None,
        tool_calls: list[tuple[str, dict[str, Any]]] | None = None, finish: str = "STOP",
        usage: dict[str, int] | None = None, chunks: int = 3, drop_after: int | None = None,
        stall_after: int | None = None, stall_seconds: float = 0.0, crlf: bool = False,
        split_writes: bool = False, no_final_newline: bool = False,
        raw_chunks: list[dict[str, Any]] | None = None, failure: _Failure | None = None,
        is_empty: bool = False, block_reason: str | None = None, grounding: dict[str, Any] | None = None,
        burst: bool = False,
    ) -> None:
        self.text = text
        self.thinking = thinking
        self.tool_calls = list(tool_calls or [])
        self.finish = finish
        self.usage = usage
        self.chunks = max(1, chunks)
        self.drop_after = drop_after
        self.stall_after = stall_after
        self.stall_seconds = stall_seconds
        self.crlf = crlf
        self.split_writes = split_writes
        self.no_final_newline = no_final_newline
        self.raw_chunks = raw_chunks
        self.failure = failure
        self.is_empty = is_empty
        self.block_reason = block_reason
        # ``groundingMetadata`` for the answer of a search call (see ``Reply.grounded``).
        self.grounding = grounding
        self.burst = burst

    @classmethod
    def text(cls, text: str, chunks: int = 3, **options: Any) -> Reply:  # type: ignore[override]
        return cls(text=text, chunks=chunks, **options)

    @classmethod
    def error(
        cls, status: int, reason: str | None = _DEFAULT, retry_delay: str | None = _DEFAULT,
        quota_reset_delay: str | None = _DEFAULT, quota_reset_timestamp: str | None = None,
        message: str | None = None, headers: dict[str, str] | None = None, body: Any = None,
    ) -> Reply:
        """A Google error answer. The 429 defaults are a short RATE_LIMIT_EXCEEDED; other
        statuses default to no details. Pass ``None`` to leave a detail out (bare 429)."""
        defaults = ("RATE_LIMIT_EXCEEDED", "0.5s", "500ms") if status == 429 else (None, None, None)
        reason, retry_delay, quota_reset_delay = (
            default if value is _DEFAULT else value
            for value, default in zip((reason, retry_delay, quota_reset_delay), defaults)
        )
        return cls(failure=_Failure(status, reason, retry_delay, quota_reset_delay, quota_reset_timestamp,
                                    message, headers, body))

    @classmethod
    def empty(cls, **options: Any) -> Reply:
        return cls(is_empty=True, **options)

    @classmethod
    def grounded(cls, text: str, queries: list[str], sources: list[tuple[str, str]],
                 supports: list[tuple[str, list[int]]] | None = None, **options: Any) -> Reply:
        """A search call's answer: ``text`` grounded in ``sources`` ((uri, title) pairs); each support names a
        piece of ``text`` and the indexes of the sources backing it (docs/upstream.md, "Web search")."""
        return cls(text=text, grounding=grounding_metadata(text, queries, sources, supports or []), **options)

    @classmethod
    def blocked(cls, reason: str = "SAFETY", **options: Any) -> Reply:
        """A prompt Google refuses: no candidates, ``promptFeedback.blockReason``, prompt usage only."""
        return cls(block_reason=reason, **options)

    @classmethod
    def raw(cls, chunks: list[dict[str, Any]], **options: Any) -> Reply:
        return cls(raw_chunks=[copy.deepcopy(c) for c in chunks], **options)

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if v not in (None, [], False)}
        return f"Reply({fields})"


# -- request validation: proto-JSON parsing pass ---------------------------------

ENVELOPE_FIELDS = frozenset({
    "project", "model", "userAgent", "requestType", "requestId", "request", "enabledCreditTypes",
})
REQUEST_FIELDS = frozenset({
    "contents", "systemInstruction", "generationConfig", "tools", "toolConfig", "safetySettings", "sessionId",
})
CONTENT_FIELDS = frozenset({"role", "parts"})
PART_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
PART_FIELDS = frozenset({*PART_DATA_FIELDS, "thought", "thoughtSignature"})
BLOB_FIELDS = frozenset({"mimeType", "data"})
FILE_FIELDS = frozenset({"mimeType", "fileUri"})
NESTED_PART_FIELDS = frozenset({"inlineData", "fileData"})
CALL_FIELDS = frozenset({"id", "name", "args"})
RESPONSE_FIELDS = frozenset({"id", "name", "response", "parts", "willContinue"})
GENERATION_FIELDS = frozenset({
    "maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "thinkingConfig", "candidateCount",
    "responseMimeType", "responseSchema", "responseJsonSchema", "seed", "presencePenalty", "frequencyPenalty",
    "imageConfig", "responseModalities",
})
THINKING_FIELDS = frozenset({"includeThoughts", "thinkingBudget", "thinkingLevel"})
TOOL_FIELDS = frozenset({"functionDeclarations", "googleSearch"})
DECLARATION_FIELDS = frozenset({
    "name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema",
})
SCHEMA_FIELDS = frozenset({
    "type", "description", "properties", "required", "items", "enum", "nullable", "format", "title",
})
SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})
TOOL_CONFIG_FIELDS = frozenset({"functionCallingConfig", "includeServerSideToolInvocations", "retrievalConfig"})
CALLING_FIELDS = frozenset({"mode", "allowedFunctionNames"})
CALLING_MODES = frozenset({"AUTO", "ANY", "NONE", "VALIDATED"})
SAFETY_FIELDS = frozenset({"category", "threshold", "method"})
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
PROTO = "type.googleapis.com/google.internal.cloud.code.v1internal."


class _Walker:
    """The proto-JSON parsing pass: unknown field names and wrong JSON types.

    Google parses the whole payload before it looks at any value and reports
    every parse error in one 400, so this pass collects instead of raising.
    Paths use proto (snake_case) names, as Google's messages do.
    """

    def __init__(self, claude: bool) -> None:
        self.claude = claude
        self.errors: list[tuple[str, str]] = []

    def raise_if_any(self) -> None:
        if self.errors:
            violations = [{"field": at, "description": text} for at, text in self.errors]
            details = [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}]
            raise google_error(400, "\n".join(text for _, text in self.errors), details=details)

    def _unknown(self, name: str, at: str, reason: str = "Cannot find field.") -> None:
        where = f" at '{at}'" if at else ""
        self.errors.append((at, f'Invalid JSON payload received. Unknown name "{name}"{where}: {reason}'))

    def _bad_value(self, at: str, proto_type: str, value: Any) -> None:
        self.errors.append((at, f"Invalid value at '{at}' ({proto_type}), {json.dumps(value)}"))

    def message(self, value: Any, at: str, allowed: frozenset[str], proto: str) -> bool:
        """Check a message-typed value; True if its fields may be walked."""
        if isinstance(value, list):
            parent, _, name = at.rpartition(".")
            self._unknown(name, parent, "Proto field is not repeating, cannot start list.")
            return False
        if not isinstance(value, dict):
            self._bad_value(at, PROTO + proto, value)
            return False
        for key in value:
            if _camel(key) not in allowed:
                self._unknown(key, at)
        return True

    def repeated(self, value: Any, at: str, proto: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self._bad_value(at, PROTO + proto, value)
            return []
        return value

    def scalar(self, obj: dict[str, Any], name: str, at: str, kind: str) -> None:
        value = _get(obj, name)
        if value is None:
            return
        path = f"{at}.{_snake(name)}" if at else _snake(name)
        if isinstance(value, list):
            self._unknown(name if name in obj else _snake(name), at, "Proto field is not repeating, cannot start list.")
        elif not _SCALARS[kind][1](value):
            self._bad_value(path, _SCALARS[kind][0], value)

    def strings(self, value: Any, at: str) -> None:
        for i, item in enumerate(self.repeated(value, at, "string")):
            if not isinstance(item, str):
                self._bad_value(f"{at}[{i}]", "TYPE_STRING", item)

    def enums(self, value: Any, at: str, allowed: frozenset[str], proto: str) -> None:
        """A repeated enum: each value one of its names (proto3 JSON also takes the numbers; no client sends them)."""
        for i, item in enumerate(self.repeated(value, at, proto)):
            if not isinstance(item, str) or item not in allowed:
                self._bad_value(f"{at}[{i}]", PROTO + proto, item)

    def struct(self, value: Any, at: str) -> None:
        """``args``/``response`` are google.protobuf.Struct: any JSON object, nothing else."""
        if value is not None and not isinstance(value, dict):
            self._bad_value(at, "type.googleapis.com/google.protobuf.Struct", value)

    def envelope(self, body: dict[str, Any]) -> None:
        self.message(body, "", ENVELOPE_FIELDS, "Request")
        for name in ("project", "model", "userAgent", "requestType", "requestId"):
            self.scalar(body, name, "", "string")
        self.enums(_get(body, "enabledCreditTypes"), "enabled_credit_types", CREDIT_TYPES, "CreditType")
        request = _get(body, "request")
        if request is not None:
            self.request(request, "request")

    def request(self, req: Any, at: str) -> None:
        if not self.message(req, at, REQUEST_FIELDS, "GenerateContentRequest"):
            return
        for i, content in enumerate(self.repeated(_get(req, "contents"), f"{at}.contents", "Content")):
            self.content(content, f"{at}.contents[{i}]")
        if (system := _get(req, "systemInstruction")) is not None:
            self.content(system, f"{at}.system_instruction")
        if (config := _get(req, "generationConfig")) is not None:
            self.generation_config(config, f"{at}.generation_config")
        for i, tool in enumerate(self.repeated(_get(req, "tools"), f"{at}.tools", "Tool")):
            self.tool(tool, f"{at}.tools[{i}]")
        if (tool_config := _get(req, "toolConfig")) is not None:
            self.tool_config(tool_config, f"{at}.tool_config")
        settings = self.repeated(_get(req, "safetySettings"), f"{at}.safety_settings", "SafetySetting")
        for i, setting in enumerate(settings):
            if self.message(setting, f"{at}.safety_settings[{i}]", SAFETY_FIELDS, "SafetySetting"):
                for name in SAFETY_FIELDS:
                    self.scalar(setting, name, f"{at}.safety_settings[{i}]", "string")
        self.scalar(req, "sessionId", at, "string")

    def content(self, content: Any, at: str) -> None:
        if not self.message(content, at, CONTENT_FIELDS, "Content"):
            return
        self.scalar(content, "role", at, "string")
        for j, part in enumerate(self.repeated(_get(content, "parts"), f"{at}.parts", "Part")):
            self.part(part, f"{at}.parts[{j}]")

    def part(self, part: Any, at: str) -> None:
        if not self.message(part, at, PART_FIELDS, "Part"):
            return
        present = [name for name in PART_DATA_FIELDS if _get(part, name) is not None]
        for extra in present[1:]:
            self.errors.append((at, f"Invalid JSON payload received. Oneof field 'data' is already set. "
                                    f"Cannot set '{_snake(extra)}' at '{at}'."))
        self.scalar(part, "text", at, "string")
        self.scalar(part, "thought", at, "bool")
        self.scalar(part, "thoughtSignature", at, "string")
        for name, fields in (("inlineData", BLOB_FIELDS), ("fileData", FILE_FIELDS)):
            blob = _get(part, name)
            if blob is not None and self.message(blob, f"{at}.{_snake(name)}", fields, "Blob"):
                for field_name in fields:
                    self.scalar(blob, field_name, f"{at}.{_snake(name)}", "string")
        call = _get(part, "functionCall")
        if call is not None and self.message(call, f"{at}.function_call", CALL_FIELDS, "FunctionCall"):
            self.scalar(call, "id", f"{at}.function_call", "string")
            self.scalar(call, "name", f"{at}.function_call", "string")
            self.struct(_get(call, "args"), f"{at}.function_call.args")
        result = _get(part, "functionResponse")
        if result is not None and self.message(result, f"{at}.function_response", RESPONSE_FIELDS, "FunctionResponse"):
            self.scalar(result, "id", f"{at}.function_response", "string")
            self.scalar(result, "name", f"{at}.function_response", "string")
            self.struct(_get(result, "response"), f"{at}.function_response.response")
            for k, nested in enumerate(self.repeated(_get(result, "parts"), f"{at}.function_response.parts", "Part")):
                self.message(nested, f"{at}.function_response.parts[{k}]", NESTED_PART_FIELDS, "Part")

    def generation_config(self, config: Any, at: str) -> None:
        if not self.message(config, at, GENERATION_FIELDS, "GenerationConfig"):
            return
        for name in ("maxOutputTokens", "candidateCount", "seed"):
            self.scalar(config, name, at, "int")
        for name in ("temperature", "topP", "topK", "presencePenalty", "frequencyPenalty"):
            self.scalar(config, name, at, "number")
        self.scalar(config, "responseMimeType", at, "string")
        self.strings(_get(config, "stopSequences"), f"{at}.stop_sequences")
        thinking = _get(config, "thinkingConfig")
        if thinking is not None and self.message(thinking, f"{at}.thinking_config", THINKING_FIELDS, "ThinkingConfig"):
            self.scalar(thinking, "includeThoughts", f"{at}.thinking_config", "bool")
            self.scalar(thinking, "thinkingBudget", f"{at}.thinking_config", "int")
            self.scalar(thinking, "thinkingLevel", f"{at}.thinking_config", "string")

    def tool(self, tool: Any, at: str) -> None:
        if not self.message(tool, at, TOOL_FIELDS, "Tool"):
            return
        self.struct(_get(tool, "googleSearch"), f"{at}.google_search")
        listed = self.repeated(_get(tool, "functionDeclarations"), f"{at}.function_declarations", "FunctionDeclaration")
        for j, declaration in enumerate(listed):
            where = f"{at}.function_declarations[{j}]"
            if not self.message(declaration, where, DECLARATION_FIELDS, "FunctionDeclaration"):
                continue
            self.scalar(declaration, "name", where, "string")
            self.scalar(declaration, "description", where, "string")
            for name in ("parameters", "response"):
                if (schema := _get(declaration, name)) is not None:
                    self.schema(schema, f"{where}.{name}")

    def schema(self, schema: Any, at: str) -> None:
        """The OpenAPI subset of docs/upstream.md, "Requests"; every JSON-Schema extra is an unknown name."""
        allowed = SCHEMA_FIELDS - {"title"} if self.claude else SCHEMA_FIELDS
        if not self.message(schema, at, allowed, "Schema"):
            return
        kind = schema.get("type")
        if isinstance(kind, list):
            self._unknown("type", at, "Proto field is not repeating, cannot start list.")
        elif kind is not None and (not isinstance(kind, str) or kind.lower() not in SCHEMA_TYPES):
            self._bad_value(f"{at}.type", "type.googleapis.com/google.ai.generativelanguage.v1beta.Type", kind)
        for name in ("description", "format", "title"):
            self.scalar(schema, name, at, "string")
        self.scalar(schema, "nullable", at, "bool")
        self.strings(schema.get("required"), f"{at}.required")
        self.strings(schema.get("enum"), f"{at}.enum")
        properties = schema.get("properties")
        if isinstance(properties, dict):
            for k, sub in enumerate(properties.values()):
                self.schema(sub, f"{at}.properties[{k}].value")
        elif properties is not None:
            self._bad_value(f"{at}.properties", "map<string, Schema>", properties)
        if (items := schema.get("items")) is not None:
            self.schema(items, f"{at}.items")

    def tool_config(self, config: Any, at: str) -> None:
        if not self.message(config, at, TOOL_CONFIG_FIELDS, "ToolConfig"):
            return
        self.scalar(config, "includeServerSideToolInvocations", at, "bool")
        self.struct(_get(config, "retrievalConfig"), f"{at}.retrieval_config")
        calling = _get(config, "functionCallingConfig")
        where = f"{at}.function_calling_config"
        if calling is not None and self.message(calling, where, CALLING_FIELDS, "FunctionCallingConfig"):
            self.scalar(calling, "mode", where, "string")
            self.strings(_get(calling, "allowedFunctionNames"), f"{where}.allowed_function_names")


# -- request validation: semantic rules -------------------------------------------


@dataclass
class _Call:
    """One validated generate call: what the answer is built from."""

    model: str
    info: dict[str, Any]
    request: dict[str, Any]
    email: str

    @property
    def claude(self) -> bool:
        return is_claude_model(self.info)

    @property
    def gemini(self) -> bool:
        return vendor(self.info) == GOOGLE

    @property
    def thinking_config(self) -> dict[str, Any]:
        return _get(_get(self.request, "generationConfig"), "thinkingConfig") or {}

    @property
    def searching(self) -> bool:
        return any(_get(tool, "googleSearch") is not None for tool in _get(self.request, "tools") or [])

    @property
    def declared(self) -> list[str]:
        return [
            _get(declaration, "name")
            for tool in _get(self.request, "tools") or []
            for declaration in _get(tool, "functionDeclarations") or []
        ]


def _thinking_requested(config: dict[str, Any]) -> bool:
    """Anthropic thinking is on with included thoughts, a non-zero budget or a level."""
    budget = _get(config, "thinkingBudget")
    return bool(_get(config, "includeThoughts")) or (budget is not None and int(budget) != 0) \
        or _get(config, "thinkingLevel") is not None


def _parts_with(parts: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    return [_get(part, field) for part in parts if _get(part, field) is not None]


def _check_generate(call: _Call, signer: _Signer) -> None:
    request = call.request
    contents = _get(request, "contents") or []
    _check_contents(contents, call.claude)
    system = _get(request, "systemInstruction")
    for j, part in enumerate(_get(system, "parts") or []):
        _check_part(part, f"system_instruction.parts[{j}]", call.claude, "system")
    _check_generation_config(call)
    _check_tools(call)
    _check_tool_config(request, call.declared)
    if call.gemini:
        _check_gemini_turns(contents)
        _check_gemini_signatures(contents, signer)
        return
    # Claude and OpenAI models pair calls and results by id, as their own APIs do.
    turns = _merge_turns(contents)
    _check_claude_tool_turns(turns, call.declared)
    if call.claude and call.info.get("supportsThinking") and _thinking_requested(call.thinking_config):
        _check_claude_thinking(turns, signer)
    if not call.claude:
        for i, content in enumerate(contents):
            for j, part in enumerate(_get(content, "parts") or []):
                if _get(part, "thoughtSignature") is not None:
                    raise invalid(f"* GenerateContentRequest.contents[{i}].parts[{j}].thought_signature: "
                                  f"thought signatures are not supported by {call.model}")


def _check_contents(contents: list[dict[str, Any]], claude: bool) -> None:
    if not contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        if _get(content, "role") not in ("user", "model"):
            raise invalid("Please use a valid role: user, model.")
        parts = _get(content, "parts") or []
        if not parts:
            raise invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        for j, part in enumerate(parts):
            _check_part(part, f"contents[{i}].parts[{j}]", claude, "messages")


def _check_part(part: dict[str, Any], at: str, claude: bool, where: str) -> None:
    if not any(_get(part, name) is not None for name in PART_DATA_FIELDS):
        raise invalid(f"* GenerateContentRequest.{at}.data: required oneof field 'data' must have one "
                      "initialized field")
    text = _get(part, "text")
    if claude and text is not None and not _get(part, "thought") and not text.strip():
        raise invalid(f"{where}: text content blocks must be non-empty")
    blob = _get(part, "inlineData")
    if blob is not None:
        if not _get(blob, "mimeType"):
            raise invalid(f"* GenerateContentRequest.{at}.inline_data.mime_type: mime_type must not be empty")
        data = _get(blob, "data") or ""
        if not data or _b64decode(data) is None:
            raise invalid(f"Invalid value at 'request.{at}.inline_data.data' (TYPE_BYTES), "
                          f"Base64 decoding failed for \"{data[:40]}\"")
    file = _get(part, "fileData")
    if file is not None and not _get(file, "fileUri"):
        raise invalid(f"* GenerateContentRequest.{at}.file_data.file_uri: file_uri must not be empty")
    for name in ("functionCall", "functionResponse"):
        value = _get(part, name)
        if value is not None and not _get(value, "name"):
            raise invalid(f"* GenerateContentRequest.{at}.{_snake(name)}.name: Name cannot be empty.")


def _check_generation_config(call: _Call) -> None:
    config = _get(call.request, "generationConfig") or {}
    limit = call.info["maxOutputTokens"]
    max_output = _get(config, "maxOutputTokens")
    if max_output is not None and not 1 <= int(max_output) <= limit:
        if call.claude:
            raise invalid(f"max_tokens: {int(max_output)} > {limit}, which is the maximum allowed number "
                          f"of output tokens for {call.model}")
        raise invalid(f"Unable to submit request because it has a maxOutputTokens value of {int(max_output)} "
                      f"but the supported range is from 1 (inclusive) to {limit + 1} (exclusive). "
                      "Update the value and try again.")
    for name, high in (("temperature", 2), ("topP", 1)):
        value = _get(config, name)
        if value is not None and not 0 <= value <= high:
            raise invalid(f"Unable to submit request because it has a {name} value of {value} but the supported "
                          f"range is from 0 (inclusive) to {high + 0.0001:g} (exclusive). "
                          "Update the value and try again.")
    thinking = _get(config, "thinkingConfig")
    if not thinking:
        return
    if not call.info.get("supportsThinking"):
        raise invalid(f"thinking is not supported for this model ({call.model})")
    level = _get(thinking, "thinkingLevel")
    if level is not None and level.lower() not in ("minimal", "low", "medium", "high"):
        raise invalid(f"Invalid value at 'request.generation_config.thinking_config.thinking_level' "
                      f"(type.googleapis.com/google.ai.generativelanguage.v1beta.ThinkingLevel), \"{level}\"")
    levels = call.info.get("_levels")
    if level is not None and levels is not None and level.lower() not in levels:
        raise invalid(f"Thinking level {level.upper()} is not supported for this model. "
                      f"Supported levels: {', '.join(x.upper() for x in levels)}.")
    budget = _get(thinking, "thinkingBudget")
    if call.claude and budget is not None and _thinking_requested(thinking):
        if int(budget) < 1024:
            raise invalid("thinking.budget_tokens: Input should be greater than or equal to 1024")
        if int(budget) >= int(max_output or limit):
            raise invalid("max_tokens must be greater than thinking.budget_tokens. Please consult our documentation "
                          "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking")


def _check_tools(call: _Call) -> None:
    seen: set[str] = set()
    for i, tool in enumerate(_get(call.request, "tools") or []):
        for j, declaration in enumerate(_get(tool, "functionDeclarations") or []):
            at = f"tools[{i}].function_declarations[{j}]"
            name = _get(declaration, "name") or ""
            if not FUNCTION_NAME.fullmatch(name):
                raise invalid(f"* GenerateContentRequest.{at}.name: Invalid function name. Must start with a letter "
                              "or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), "
                              "colons (:), or dashes (-), with a maximum length of 64.")
            if name in seen:
                raise invalid(f"* GenerateContentRequest.{at}.name: Duplicate function declaration found: {name}")
            seen.add(name)
            parameters = _get(declaration, "parameters")
            if parameters is None and _get(declaration, "parametersJsonSchema") is None and call.claude:
                raise invalid(f"* GenerateContentRequest.{at}.parameters: VALIDATED function calling requires "
                              "an object schema that declares at least one property")
            if parameters is not None:
                _check_schema(parameters, f"{at}.parameters", call.claude)
            if (response := _get(declaration, "response")) is not None:
                _check_schema(response, f"{at}.response", False)


def _check_schema(schema: dict[str, Any], at: str, claude: bool) -> None:
    kind = (schema.get("type") or "").lower()
    properties = schema.get("properties") or {}
    for k, name in enumerate(schema.get("required") or []):
        if name not in properties:
            raise invalid(f"* GenerateContentRequest.{at}.required[{k}]: property is not defined")
    if kind == "array" and schema.get("items") is None:
        raise invalid(f"* GenerateContentRequest.{at}.items: missing field.")
    fmt = schema.get("format")
    if fmt and kind == "string" and fmt not in ("enum", "date-time"):
        raise invalid(f"* GenerateContentRequest.{at}.format: only 'enum' and 'date-time' are supported "
                      "for STRING type")
    if claude and kind == "object" and not properties:
        raise invalid(f"* GenerateContentRequest.{at}.properties: VALIDATED function calling requires every "
                      "object schema to declare at least one property")
    for name, sub in properties.items():
        _check_schema(sub, f"{at}.properties[{name}]", claude)
    if schema.get("items") is not None:
        _check_schema(schema["items"], f"{at}.items", claude)


def _check_tool_config(request: dict[str, Any], declared: list[str]) -> None:
    calling = _get(_get(request, "toolConfig"), "functionCallingConfig") or {}
    mode = _get(calling, "mode")
    if mode is not None and mode not in CALLING_MODES:
        raise invalid("Invalid value at 'request.tool_config.function_calling_config.mode' (type.googleapis.com/"
                      f"google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\"")
    allowed = _get(calling, "allowedFunctionNames") or []
    if allowed and mode not in ("ANY", "VALIDATED"):
        # Google documents the names as valid with ANY or VALIDATED only; the text follows its other messages.
        raise invalid("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                      "allowed_function_names may only be set when mode is ANY or VALIDATED")
    for name in allowed:
        if name not in declared:
            raise invalid("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                          f"function '{name}' is not declared in tools")


def _merge_turns(contents: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Google's Claude adapter merges consecutive same-role contents into one message,
    so alternation is never an error, but Anthropic's message rules apply to the merged turns."""
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for content in contents:
        role, parts = _get(content, "role"), list(_get(content, "parts"))
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(parts)
        else:
            turns.append((role, parts))
    return turns


def _check_claude_tool_turns(turns: list[tuple[str, list[dict[str, Any]]]], declared: list[str]) -> None:
    """Anthropic's tool_use/tool_result pairing, by id, between adjacent messages."""
    for i, (role, parts) in enumerate(turns):
        calls, results = _parts_with(parts, "functionCall"), _parts_with(parts, "functionResponse")
        if (calls or results) and not declared:
            raise invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")
        for k, call in enumerate(calls):
            if not _get(call, "id"):
                raise invalid(f"messages.{i}.content.{k}.tool_use.id: Field required")
        previous = turns[i - 1] if i else ("", [])
        offered = {_get(c, "id") for c in _parts_with(previous[1], "functionCall")} if previous[0] == "model" else set()
        for k, result in enumerate(results):
            if _get(result, "id") not in offered:
                raise invalid(f"messages.{i}.content.{k}: unexpected tool_use_id found in tool_result blocks: "
                              f"{_get(result, 'id')}. Each tool_result block must have a corresponding "
                              "tool_use block in the previous message.")
        if calls and i + 1 < len(turns):
            answered = {_get(r, "id") for r in _parts_with(turns[i + 1][1], "functionResponse")}
            missing = [_get(c, "id") for c in calls if _get(c, "id") not in answered]
            if missing:
                raise invalid(f"messages.{i}: tool_use ids were found without tool_result blocks immediately "
                              f"after: {', '.join(missing)}. Each tool_use block must have a corresponding "
                              "tool_result block in the next message.")


def _check_claude_thinking(turns: list[tuple[str, list[dict[str, Any]]]], signer: _Signer) -> None:
    """Thinking blocks must be replayed exactly as signed, and a tool loop in progress
    must keep the thinking that started it (Anthropic's extended-thinking rules)."""
    for i, (_, parts) in enumerate(turns):
        for j, part in enumerate(parts):
            if not _get(part, "thought"):
                continue
            signature = _get(part, "thoughtSignature")
            if not signature:
                raise invalid(f"messages.{i}.content.{j}.thinking.signature: Field required")
            if not signer.verify("claude", signature, _get(part, "text") or ""):
                raise invalid(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    if len(turns) < 2 or turns[-1][0] != "user" or not _parts_with(turns[-1][1], "functionResponse"):
        return
    role, parts = turns[-2]
    if role == "model" and not _get(parts[0], "thought"):
        found = "tool_use" if _get(parts[0], "functionCall") is not None else "text"
        raise invalid(f"messages.{len(turns) - 2}.content.0.type: Expected thinking or redacted_thinking, but found "
                      f"{found}. When thinking is enabled, a final assistant message must start with a thinking "
                      "block (preceeding the lastmost set of tool_use and tool_result blocks). We recommend you "
                      "include thinking blocks from previous turns. To avoid this requirement, disable thinking.")


def _check_gemini_turns(contents: list[dict[str, Any]]) -> None:
    """Gemini's turn-order rules for function calling."""
    for i, content in enumerate(contents):
        parts = _get(content, "parts")
        previous = _get(contents[i - 1], "parts") if i else []
        previous_role = _get(contents[i - 1], "role") if i else None
        if _get(content, "role") == "model" and _parts_with(parts, "functionCall"):
            if previous_role != "user" and not _parts_with(previous, "functionResponse"):
                raise invalid("Please ensure that function call turn comes immediately after a user turn "
                              "or after a function response turn.")
        results = _parts_with(parts, "functionResponse")
        if results:
            calls = _parts_with(previous, "functionCall")
            if not calls:
                raise invalid("Please ensure that function response turn comes immediately after a function call turn.")
            if len(results) != len(calls):
                raise invalid("Please ensure that the number of function response parts is equal to the number "
                              "of function call parts of the function call turn.")


def _check_gemini_signatures(contents: list[dict[str, Any]], signer: _Signer) -> None:
    """Every replayed function call carries its signature (or the documented sentinel);
    any signature present must be one a Gemini model issued."""
    for content in contents:
        for position, part in enumerate(_get(content, "parts"), start=1):
            signature = _get(part, "thoughtSignature")
            call = _get(part, "functionCall")
            if signature is None:
                if call is not None and _get(content, "role") == "model":
                    raise invalid("Function call is missing a thought_signature in functionCall parts. This is "
                                  "required for tools to work correctly, and missing thought_signature may lead to "
                                  f"degraded model performance. Additional data, function call "
                                  f"`default_api:{_get(call, 'name')}` , position {position}. Please refer to "
                                  "https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")
            elif signature != SENTINEL_SIGNATURE and not signer.verify("gemini", signature):
                raise invalid("Corrupted thought signature.")


def _check_search(call: _Call, request_type: Any) -> None:
    """Web search (docs/upstream.md, "Web search"): a call of its own, with ``requestType: "web_search"``, no
    function declarations beside ``googleSearch``, on a model the listing names in ``webSearchModelIds``."""
    if not call.searching:
        if request_type == "web_search":
            raise invalid("A web_search request needs the google_search tool.")
        return
    if call.declared:
        raise invalid("Multiple tools are supported only when they are all search tools.")
    if not call.info.get("_search"):
        raise invalid(f"Google Search is not supported for model {call.model}.")
    if request_type != "web_search":
        raise invalid(f"The google_search tool needs requestType web_search, got {request_type!r}.")


# -- answers --------------------------------------------------------------------


def grounding_metadata(text: str, queries: list[str], sources: list[tuple[str, str]],
                       supports: list[tuple[str, list[int]]]) -> dict[str, Any]:
    """Google's ``groundingMetadata``: segment offsets count UTF-8 bytes of the answer, and proto3 leaves a
    zero ``startIndex`` out."""
    encoded, found = text.encode("utf-8"), []
    cursor = 0
    for piece, indices in supports:
        at = text.index(piece, cursor)
        cursor = at + len(piece)
        start, end = len(text[:at].encode("utf-8")), len(text[:cursor].encode("utf-8"))
        segment = {"startIndex": start, "endIndex": end, "text": encoded[start:end].decode("utf-8")}
        if start == 0:
            del segment["startIndex"]
        found.append({"segment": segment, "groundingChunkIndices": list(indices),
                      "confidenceScores": [0.9] * len(indices)})
    return {
        "webSearchQueries": list(queries),
        "searchEntryPoint": {"renderedContent": "<style>.container{}</style><div class=\"container\">"
                             + "".join(f"<a class=\"chip\">{q}</a>" for q in queries) + "</div>"},
        "groundingChunks": [{"web": {"uri": uri, "title": title}} for uri, title in sources],
        "groundingSupports": found,
        "retrievalMetadata": {},
    }


def search_query(call: _Call) -> str:
    """What the search model searches for: the last user text, without a "Perform a web search for" wording."""
    contents = _get(call.request, "contents") or []
    last_user = next((c for c in reversed(contents) if _get(c, "role") == "user"), {})
    texts = [_get(p, "text") for p in _get(last_user, "parts") or [] if isinstance(_get(p, "text"), str)]
    text = " ".join(t.strip() for t in texts if t.strip())
    return re.sub(r"^.*?\bsearch for(?: the query)?:\s*", "", text, flags=re.IGNORECASE | re.DOTALL).strip()


def search_reply(call: _Call) -> Reply:
    """The grounded answer of a search call with nothing queued: three pages derived from the query, and an
    answer whose sentences cite them (the first behind a multi-byte character, so offsets are bytes)."""
    query = search_query(call) or "nothing"
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-") or "search"
    sources = [
        (f"https://docs.example.com/{slug}", f"{query} - Documentation"),
        (f"https://news.example.org/{slug}", f"Latest news about {query}"),
        (f"https://wiki.example.net/wiki/{slug}", f"{query} - Wiki"),
    ]
    cited = [
        (f"The documentation explains {query}.", [0]),
        (f"News sites reported on {query} this week.", [1]),
        (f"The wiki and the documentation agree on {query}.", [2, 0]),
    ]
    text = "Search results \u2014 summary: " + " ".join(piece for piece, _ in cited)
    return Reply.grounded(text, [query], sources, cited)




def _part_text(part: dict[str, Any]) -> str:
    if isinstance(_get(part, "text"), str):
        return _get(part, "text")
    for name, payload in (("functionCall", "args"), ("functionResponse", "response")):
        value = _get(part, name)
        if value is not None:
            return f"{_get(value, 'name')} {json.dumps(_get(value, payload) or {})}"
    return ""


def prompt_tokens(request: dict[str, Any]) -> int:
    """The fake's rough input count: system, contents and tool declarations."""
    contents = list(_get(request, "contents") or [])
    if isinstance(_get(request, "systemInstruction"), dict):
        contents.insert(0, _get(request, "systemInstruction"))
    pieces = [_part_text(part) for content in contents for part in _get(content, "parts") or []]
    if _get(request, "tools"):
        pieces.append(json.dumps(_get(request, "tools")))
    return rough_tokens("\n".join(pieces))


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def default_reply(call: _Call) -> Reply:
    """What a person trying the gateway sees with nothing queued: echo, tools on request."""
    contents = _get(call.request, "contents")
    last_user = next((c for c in reversed(contents) if _get(c, "role") == "user"), {})
    parts = _get(last_user, "parts") or []
    texts = [t for t in (_get(p, "text") for p in parts if not _get(p, "thought")) if isinstance(t, str) and t.strip()]
    user_text = texts[-1] if texts else ""
    results = _parts_with(parts, "functionResponse")
    reply = Reply(text=f"Echo: {user_text}")
    if results:
        response = _get(results[0], "response") or {}
        result = response.get("result", response) if isinstance(response, dict) else response
        reply = Reply(text=f"Tool result received: {_compact(result)}")
        user_text = user_text or _compact(result)
    elif match := re.search(r"call tool\s+([A-Za-z_][\w.:-]*)\s+with\s+(\{.*\})", user_text, re.DOTALL):
        try:
            args = json.loads(match.group(2))
        except ValueError:
            args = None
        if isinstance(args, dict) and match.group(1) in call.declared:
            reply = Reply(tool_calls=[(match.group(1), args)])
    if _get(call.thinking_config, "includeThoughts") and call.info.get("supportsThinking"):
        reply.thinking = f"Thinking about: {user_text}"
    return reply


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i:i + size] for i in range(0, len(text), size)] or [text]


def _answer_events(reply: Reply, call: _Call, signer: _Signer) -> list[list[dict[str, Any]]]:
    """The parts of each streamed event, signed per family (docs/upstream.md, "Thought signatures")."""
    events: list[list[dict[str, Any]]] = []
    gemini_signature = None if call.claude else signer.sign("gemini")
    if reply.thinking:
        events += [[{"text": piece, "thought": True}] for piece in _split(reply.thinking, reply.chunks)]
        if call.claude:
            events.append([{"text": "", "thought": True, "thoughtSignature": signer.sign("claude", reply.thinking)}])
    if reply.text:
        for k, piece in enumerate(_split(reply.text, reply.chunks)):
            part: dict[str, Any] = {"text": piece}
            if k == 0 and gemini_signature and not reply.tool_calls:
                part["thoughtSignature"] = gemini_signature
            events.append([part])
    if reply.tool_calls:
        calls = []
        for k, (name, args) in enumerate(reply.tool_calls):
            function_call = {} if call.gemini else {"id": "toolu_" + secrets.token_hex(12)}
            part = {"functionCall": {**function_call, "name": name, "args": args}}
            if k == 0 and gemini_signature:
                part["thoughtSignature"] = gemini_signature
            calls.append(part)
        events.append(calls)
    if reply.thinking and gemini_signature and not reply.text and not reply.tool_calls:
        events.append([{"text": "", "thoughtSignature": gemini_signature}])
    return events


def _usage(reply: Reply, prompt: int, cached: int) -> dict[str, int]:
    output = (reply.text or "") + "".join(json.dumps(args) for _, args in reply.tool_calls)
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": rough_tokens(output) if output else 0}
    if reply.thinking:
        usage["thoughtsTokenCount"] = rough_tokens(reply.thinking)
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage.update(reply.usage or {})
    if "totalTokenCount" not in (reply.usage or {}):
        counted = ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount")
        usage["totalTokenCount"] = sum(usage.get(k, 0) for k in counted)
    return usage


def render_chunks(reply: Reply, call: _Call, signer: _Signer, prompt: int, cached: int = 0) -> list[dict[str, Any]]:
    """The GenerateContentResponse of each stream event; finishReason and full usage ride on the last."""
    if reply.raw_chunks is not None:
        return copy.deepcopy(reply.raw_chunks)
    common = {"modelVersion": call.model, "responseId": "req_vrtx_" + secrets.token_hex(12)}
    if reply.block_reason is not None:
        feedback = {"blockReason": reply.block_reason, "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}
        return [{"promptFeedback": feedback, "usageMetadata": {"promptTokenCount": prompt,
                                                               "totalTokenCount": prompt}, **common}]
    usage = _usage(reply, prompt, cached)
    events = [] if reply.is_empty else _answer_events(reply, call, signer)
    if not events:
        return [{"usageMetadata": usage, **common}]
    chunks = []
    for k, parts in enumerate(events):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
        chunk: dict[str, Any] = {"candidates": [candidate]}
        if k == 0:
            chunk["usageMetadata"] = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        if k == len(events) - 1:
            candidate["finishReason"] = reply.finish
            if reply.grounding is not None:  # Google reports the grounding with the end of the answer
                candidate["groundingMetadata"] = copy.deepcopy(reply.grounding)
            chunk["usageMetadata"] = usage
        chunks.append({**chunk, **common})
    return chunks


def _part_kind(part: dict[str, Any]) -> str:
    if "text" not in part:
        return "other"
    return "thought" if part.get("thought") else "text"


def merge_chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold stream chunks into the unary answer: consecutive text and thought parts
    are concatenated and keep their signature (docs/upstream.md, "Streaming responses")."""
    parts: list[dict[str, Any]] = []
    finish, usage, grounding = None, None, None
    for chunk in chunks:
        for candidate in chunk.get("candidates") or []:
            finish = candidate.get("finishReason") or finish
            grounding = candidate.get("groundingMetadata") or grounding
            for part in (candidate.get("content") or {}).get("parts") or []:
                if parts and _part_kind(part) != "other" and _part_kind(part) == _part_kind(parts[-1]):
                    parts[-1]["text"] += part.get("text", "")
                    if part.get("thoughtSignature") and not parts[-1].get("thoughtSignature"):
                        parts[-1]["thoughtSignature"] = part["thoughtSignature"]
                else:
                    parts.append(copy.deepcopy(part))
        usage = chunk.get("usageMetadata") or usage
    merged: dict[str, Any] = {}
    if parts or finish:
        candidate = {"content": {"role": "model", "parts": parts}}
        merged["candidates"] = [{**candidate, "finishReason": finish} if finish else candidate]
        if grounding:
            merged["candidates"][0]["groundingMetadata"] = grounding
    if usage:
        merged["usageMetadata"] = usage
    for key in ("modelVersion", "responseId"):
        if chunks and key in chunks[0]:
            merged[key] = chunks[0][key]
    return merged


# -- accounts and OAuth ---------------------------------------------------------


@dataclass
class Account:
    email: str
    refresh_token: str
    project_id: str | None
    user_id: str
    onboard_calls: int = 0
    project_number: str = ""
    # Account standing (``require_validation``, ``suspend``) and Google One AI credits (``set_credits``).
    validation_url: str | None = None
    validation_detail: str = "both"
    suspended: bool = False
    credits: int = 0


@dataclass
class Recorded:
    """One request as the fake received it, and the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    email: str | None
    status: int | None = None


class _Identity:
    """Accounts, tokens and the signing key: shared by peer fakes, like Google's
    one auth backend behind the daily and prod hosts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accounts: dict[str, Account] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.access_tokens: dict[str, tuple[str, float]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.signer = _Signer(secrets.token_bytes(32))

    def mint(self, email: str, ttl: float) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self.lock:
            self.access_tokens[token] = (email, time.monotonic() + ttl)
        return token

    def email_for(self, authorization: str | None) -> str | None:
        token = (authorization or "").removeprefix("Bearer ").strip()
        with self.lock:
            entry = self.access_tokens.get(token)
        return entry[0] if entry else None

    def authenticate(self, authorization: str | None) -> Account:
        """Section 6.3: a missing, unknown or expired bearer token is a 401."""
        if not (authorization or "").startswith("Bearer "):
            raise google_error(401, "Request is missing required authentication credential. Expected OAuth 2 "
                               "access token, login cookie or other valid authentication credential.",
                               details=[{"@type": ERROR_INFO, "reason": "CREDENTIALS_MISSING",
                                         "domain": "googleapis.com"}],
                               headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        with self.lock:
            email, expires = self.access_tokens.get(authorization[7:].strip(), (None, 0.0))
        if email is None or expires <= time.monotonic():
            reason = "ACCESS_TOKEN_EXPIRED" if email else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            raise google_error(401, details=[{"@type": ERROR_INFO, "reason": reason, "domain": "googleapis.com"}],
                               headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                                                            'error="invalid_token"'})
        return self.accounts[email]


# -- HTTP -------------------------------------------------------------------------

_ROUTES = {
    ("POST", "/token"): "token",
    ("GET", "/oauth2/v2/userinfo"): "userinfo",
    ("GET", "/oauth2/v1/userinfo"): "userinfo",
    ("GET", "/o/oauth2/v2/auth"): "auth",
    ("GET", "/manifest/latest-arm64-mac.yml"): "manifest",
}


def _route(verb: str, path: str) -> str:
    if path.startswith("/v1internal:") and verb == "POST":
        return path.split(":", 1)[1]
    return _ROUTES.get((verb, path), "unknown")


class _Handler(BaseHTTPRequestHandler):
    """One connection. Endpoints are the ``_do_<method>`` methods."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls
    server_version = "ESF"
    sys_version = ""
    server: _Server

    @property
    def fake(self) -> FakeCloudCode:
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.fake.verbose:
            sys.stderr.write(f"[fake_cloudcode] {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    # -- plumbing --

    def _handle(self) -> None:
        self._headers_sent = False
        url = urlsplit(self.path)
        method = _route(self.command, url.path)
        raw = self._read_body()
        self._body, self._body_ok = self._parse_body(method, raw)
        rec = Recorded(
            method=method, path=url.path,
            query={k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._body, email=self.fake._identity.email_for(self.headers.get("Authorization")),
        )
        self.fake._record(rec)
        try:
            injected = self.fake._take_injection(method)
            if injected is not None:
                raise injected
            getattr(self, f"_do_{method}", self._do_unknown)(rec)
        except ApiError as err:
            self._send(rec, err.status, err.body, err.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the fake: say so loudly instead of hanging the client
            traceback.print_exc()
            if self._headers_sent:
                self.close_connection = True
            else:
                self._send(rec, 500, google_error(500, f"fake_cloudcode crashed: {exc!r}").body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _parse_body(self, method: str, raw: bytes) -> tuple[Any, bool]:
        if not raw:
            return None, True
        text = raw.decode("utf-8", "replace")
        if method == "token" and "json" not in self.headers.get("Content-Type", ""):
            return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}, True
        try:
            return json.loads(text), True
        except ValueError:
            return text, False

    def _json_body(self) -> dict[str, Any]:
        if not self._body_ok:
            raise invalid("Invalid JSON payload received. Unexpected token.")
        if self._body is None:
            return {}
        if not isinstance(self._body, dict):
            raise invalid('Invalid JSON payload received. Unknown name "": Root element must be a message.')
        return self._body

    def _account(self) -> Account:
        return self.fake._identity.authenticate(self.headers.get("Authorization"))

    def _send(self, rec: Recorded, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            payload = json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8")
            headers.setdefault("Content-Type", "application/json; charset=UTF-8")
        else:
            payload = body if isinstance(body, bytes) else str(body or "").encode("utf-8")
            headers.setdefault("Content-Type", "text/plain; charset=UTF-8")
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        self._headers_sent = True
        rec.status = status
        self.wfile.write(payload)

    # -- OAuth endpoints --

    def _do_token(self, rec: Recorded) -> None:
        self._send(rec, 200, self.fake._grant(self._body if isinstance(self._body, dict) else {}))

    def _do_auth(self, rec: Recorded) -> None:
        location = self.fake._authorize(rec.query)
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self._headers_sent = True
        rec.status = 302

    def _do_userinfo(self, rec: Recorded) -> None:
        account = self._account()
        name = account.email.split("@")[0]
        self._send(rec, 200, {
            "id": account.user_id, "email": account.email, "verified_email": True, "name": name.title(),
            "given_name": name.title(), "picture": "https://lh3.googleusercontent.com/a/fake",
        })

    def _do_manifest(self, rec: Recorded) -> None:
        """The Antigravity updater's manifest (electron-builder's latest-*.yml), which names the current version."""
        version = self.fake.manifest_version
        self._send(rec, 200, f"version: {version}\nfiles:\n  - url: Antigravity-{version}-arm64-mac.zip\n"
                             f"path: Antigravity-{version}-arm64-mac.zip\nreleaseDate: '2026-11-20T10:00:00.000Z'\n",
                   {"Content-Type": "text/yaml"})

    def _do_unknown(self, rec: Recorded) -> None:
        raise google_error(404, f"Method not found: {self.command} {rec.path}")

    # -- v1internal endpoints --

    def _do_loadCodeAssist(self, rec: Recorded) -> None:
        account, _ = self._account(), self._json_body()
        tier = {"id": "free-tier", "name": "Antigravity Free", "userDefinedCloudaicompanionProject": False}
        answer: dict[str, Any] = {"currentTier": tier, "allowedTiers": [{**tier, "isDefault": True}]}
        if account.project_id:
            answer["cloudaicompanionProject"] = self.fake._project_json(account) if self.fake.project_as_object \
                else account.project_id
        self._send(rec, 200, answer)

    def _do_onboardUser(self, rec: Recorded) -> None:
        account, _ = self._account(), self._json_body()
        self._send(rec, 200, self.fake._onboard(account))

    def _do_fetchAvailableModels(self, rec: Recorded) -> None:
        account, body = self._account(), self._json_body()
        self.fake._check_client_headers(rec.headers)
        self.fake._check_standing(account)
        self.fake._check_project(_get(body, "project"), account, optional=True)
        self._send(rec, 200, self.fake._model_listing(account.email))

    def _do_retrieveUserQuotaSummary(self, rec: Recorded) -> None:
        """Quota per model group in a 5-hour and a weekly window (docs/upstream.md, "Quota windows")."""
        if not self.fake.quota_summary:
            return self._do_unknown(rec)
        account, body = self._account(), self._json_body()
        self.fake._check_client_headers(rec.headers)
        self.fake._check_standing(account)
        for key in body:
            if _camel(key) != "project":
                raise invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
        self.fake._check_project(_get(body, "project"), account, optional=True)
        self._send(rec, 200, self.fake._quota_summary(account.email))

    def _do_countTokens(self, rec: Recorded) -> None:
        account, body = self._account(), self._json_body()
        model = _get(body, "model")
        self.fake._check_client_headers(rec.headers)
        self.fake._check_standing(account)
        claude = is_claude_model(self.fake.models.get(model) if isinstance(model, str) else None)
        walker = _Walker(claude)
        walker.envelope(body)
        walker.raise_if_any()
        self.fake._check_project(_get(body, "project"), account, optional=True)
        if model is not None:
            self.fake._model_info(model, rec.headers)
        request = _get(body, "request") or {}
        _check_contents(_get(request, "contents") or [], claude)
        self._send(rec, 200, {"totalTokens": prompt_tokens(request)})

    def _do_generateContent(self, rec: Recorded) -> None:
        self._generate(rec, stream=False)

    def _do_streamGenerateContent(self, rec: Recorded) -> None:
        self._generate(rec, stream=True)

    def _generate(self, rec: Recorded, stream: bool) -> None:
        account = self._account()
        self.fake._check_client_headers(rec.headers)
        self.fake._check_standing(account)
        body = self._json_body()
        call = self.fake._prepare_call(body, account, rec.headers)
        self.fake._check_quota(account, call.model, _get(body, "enabledCreditTypes") or [])
        reply = self.fake._next_reply(account.email, call.model) or (
            search_reply(call) if call.searching else default_reply(call))
        if reply.failure is not None:
            raise reply.failure.to_error(call.model)
        prompt = prompt_tokens(call.request)
        cached = self.fake._cached_tokens(account.email, _get(call.request, "sessionId"), prompt)
        chunks = render_chunks(reply, call, self.fake._identity.signer, prompt, cached)
        trace = secrets.token_hex(8)
        if not stream:
            self._send(rec, 200, {"response": merge_chunks(chunks), "traceId": trace})
        elif rec.query.get("alt") != "sse":  # without alt=sse Google streams one JSON array
            self._send(rec, 200, [{"response": chunk, "traceId": trace} for chunk in chunks])
        else:
            self._stream(rec, [{"response": chunk, "traceId": trace} for chunk in chunks], reply)

    # -- server-sent events --

    def _stream(self, rec: Recorded, events: list[dict[str, Any]], reply: Reply) -> None:
        newline = "\r\n" if reply.crlf else "\n"
        frames = []
        for k, event in enumerate(events):
            frame = "data: " + json.dumps(event, separators=(",", ":"), ensure_ascii=False)
            if not (reply.no_final_newline and k == len(events) - 1):
                frame += newline * 2
            frames.append(frame.encode("utf-8"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self._headers_sent = True
        rec.status = 200
        self.fake._streams(+1)
        try:
            self._pump(frames, reply)
        except OSError:
            self._client_went_away()
        finally:
            self.fake._streams(-1)

    def _pump(self, frames: list[bytes], reply: Reply) -> None:
        if reply.burst:
            return self._burst(frames, reply)
        for k, frame in enumerate(frames):
            if reply.drop_after is not None and k >= reply.drop_after:
                break
            if k == reply.stall_after and not self._stall(reply.stall_seconds):
                return
            if self._client_gone():
                return self._client_went_away()
            self._write_frame(frame, reply.split_writes)
            time.sleep(self.fake.event_delay)
        if reply.drop_after is not None:
            return self._abort()
        self._chunk(b"")

    def _burst(self, frames: list[bytes], reply: Reply) -> None:
        """Many events in one write, each its own HTTP chunk: a fast model's long
        answer that the gateway receives in a few reads."""
        cut = len(frames) if reply.stall_after is None else min(reply.stall_after, len(frames))
        self.wfile.write(b"".join(b"%X\r\n%s\r\n" % (len(frame), frame) for frame in frames[:cut]))
        if cut < len(frames) and not self._stall(reply.stall_seconds):
            return
        self.wfile.write(b"".join(b"%X\r\n%s\r\n" % (len(frame), frame) for frame in frames[cut:]) + b"0\r\n\r\n")

    def _write_frame(self, frame: bytes, split: bool) -> None:
        """With ``split``, one event goes out in three HTTP chunks: mid-JSON and just
        before the final byte (between ``\\r`` and ``\\n`` with CRLF)."""
        if not split:
            return self._chunk(frame)
        cuts = sorted({0, max(1, len(frame) // 3), max(1, len(frame) - 1), len(frame)})
        for start, end in zip(cuts, cuts[1:]):
            self._chunk(frame[start:end])
            time.sleep(0.003)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _stall(self, seconds: float) -> bool:
        """Go silent; notice a client that leaves meanwhile (and stop() too)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.fake._stopping.wait(min(left, 0.02)):
                self.close_connection = True
                return False
            if self._client_gone():
                self._client_went_away()
                return False
        return True

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _client_went_away(self) -> None:
        self.close_connection = True
        with self.fake._lock:
            self.fake.closed_by_client += 1

    def _abort(self) -> None:
        """A broken upstream: FIN without the chunked terminator."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    block_on_close = False

    def __init__(self, address: tuple[str, int], fake: FakeCloudCode) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.fake.verbose:
            super().handle_error(request, client_address)


# -- the fake ---------------------------------------------------------------------


class FakeCloudCode:
    """Cloud Code ``v1internal`` plus Google OAuth on one loopback port.

    Tests script answers with ``enqueue`` and failures with ``inject``, and
    inspect ``requests``. Account state: ``set_quota`` (the listing),
    ``set_quota_window`` (retrieveUserQuotaSummary, and 429s when empty),
    ``require_validation``/``suspend`` (403s) and ``set_credits``. Pass ``peer=`` to run a second host (say "prod"
    next to "daily") that shares accounts, tokens and signing keys.
    """

    def __init__(self, models: dict[str, dict[str, Any]] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, peer: FakeCloudCode | None = None) -> None:
        self.models = copy.deepcopy(DEFAULT_MODELS if models is None else models)
        self.host, self.port = host, port
        self._identity = peer._identity if peer else _Identity()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._connections: set[socket.socket] = set()
        self._queue: list[tuple[Reply, str | None, str | None]] = []
        self._injections: list[list[Any]] = []
        self._quotas: dict[tuple[str, str], dict[str, Any]] = {}
        # (email, group, window) -> the bucket's remainingFraction/resetTime, as set_quota_window left them.
        self._windows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._sessions: dict[tuple[str, str], int] = {}
        self.requests: list[Recorded] = []
        self.open_streams = 0
        self.closed_by_client = 0
        self.base_url = ""
        # Settings tests may change.
        self.access_token_ttl: float = 3599
        self.require_headers = True
        self.project_as_object = False
        self.onboard_polls = 1
        self.issue_refresh_token = True
        self.client_id: str | None = None
        self.cache_min_tokens = 1024
        self.event_delay = 0.002
        self.deprecated_model_ids: dict[str, dict[str, str]] = (
            {old: {"newModelId": new} for old, new in DEFAULT_DEPRECATIONS.items()} if models is None else {})
        # The version gate (docs/upstream.md): tests raise it mid-run; the manifest says what to send instead.
        self.min_client_version = MIN_CLIENT_VERSION
        # False: retrieveUserQuotaSummary is not there (404), as on backends that predate it.
        self.quota_summary = True
        self.manifest_version = "2.11.3"
        self.verbose = False

    # -- lifecycle --

    def start(self) -> FakeCloudCode:
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
            self.base_url = f"http://{self.host}:{self._server.server_address[1]}"
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                             name=f"fake-cloudcode-{self._server.server_address[1]}", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, like a host going down."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeCloudCode:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def userinfo_url(self) -> str:
        return f"{self.base_url}/oauth2/v2/userinfo"

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/o/oauth2/v2/auth"

    # -- test API --

    @property
    def accounts(self) -> dict[str, Account]:
        return self._identity.accounts

    def add_account(self, email: str, refresh_token: str | None = None, project_id: str | None = _DEFAULT) -> Account:
        """Register a Google account. ``project_id=None``: not onboarded (docs/upstream.md, "Project discovery")."""
        account = Account(
            email=email,
            refresh_token=refresh_token or "1//fake-" + secrets.token_urlsafe(18),
            project_id=f"project-{re.sub(r'[^a-z0-9]', '-', email.split('@')[0].lower())}"
            if project_id is _DEFAULT else project_id,
            user_id=str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
            project_number=str(secrets.randbelow(10**11) + 10**11),
        )
        with self._identity.lock:
            self._identity.accounts[email] = account
            self._identity.refresh_tokens[account.refresh_token] = email
        return account

    def revoke(self, refresh_token: str) -> None:
        with self._identity.lock:
            self._identity.refresh_tokens.pop(refresh_token, None)

    def mint_access_token(self, email: str) -> str:
        """A valid access token without a token request (for tests that skip OAuth)."""
        return self._identity.mint(email, self.access_token_ttl)

    def expire_access_tokens(self) -> None:
        with self._identity.lock:
            self._identity.access_tokens = {t: (e, 0.0) for t, (e, _) in self._identity.access_tokens.items()}

    def enqueue(self, *replies: Reply, email: str | None = None, model: str | None = None) -> None:
        """Queue answers (FIFO) for generate calls, optionally only for one account and/or model."""
        with self._lock:
            self._queue.extend((reply, email, model) for reply in replies)

    def inject(self, method: str, status: int = 500, body: Any = None, times: int = 1,
               headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` with this error, before any other check."""
        error = ApiError(status, body, headers) if body is not None else _default_error(method, status)
        error.headers = headers or error.headers
        with self._lock:
            self._injections.append([method, error, times])

    def generate_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in GENERATE_METHODS]

    def refresh_count(self, refresh_token: str) -> int:
        """How many refresh_token grants reached the token endpoint for this token (successful or not)."""
        return sum(
            1 for r in self.requests
            if r.method == "token" and isinstance(r.body, dict)
            and r.body.get("grant_type") == "refresh_token" and r.body.get("refresh_token") == refresh_token
        )

    def set_quota(self, email: str, model: str, remaining_fraction: float | None, reset_time_iso: str | None) -> None:
        quota: dict[str, Any] = {}
        if remaining_fraction is not None:
            quota["remainingFraction"] = remaining_fraction
        if reset_time_iso is not None:
            quota["resetTime"] = reset_time_iso
        with self._lock:
            self._quotas[(email, model)] = quota

    def set_quota_window(self, email: str, group: str, window: str, remaining_fraction: float | None,
                         reset_time_iso: str | None = None) -> None:
        """One bucket of retrieveUserQuotaSummary: ``group`` a key of QUOTA_GROUPS, ``window`` ``5h`` or ``weekly``.

        A fraction of 0 (or None) with a reset still ahead exhausts the group's models on that account:
        generate calls answer 429 QUOTA_EXHAUSTED (AI credits aside). An empty 5-hour window says when it
        resets; an empty weekly window does not, which is how the real 429 leaves clients guessing.
        """
        if group not in QUOTA_GROUPS or window not in WINDOWS:
            raise ValueError(f"no quota window {group}/{window}")
        bucket: dict[str, Any] = {}
        if remaining_fraction:  # proto3 leaves a zero out
            bucket["remainingFraction"] = remaining_fraction
        if reset_time_iso is not None:
            bucket["resetTime"] = reset_time_iso
        with self._lock:
            self._windows[(email, group, window)] = bucket

    def require_validation(self, email: str, url: str, detail: str = "both") -> None:
        """Every generate call, count and listing of the account answers 403 VALIDATION_REQUIRED carrying ``url``
        in ErrorInfo.metadata.validation_url (``detail="metadata"``), a google.rpc.Help link (``"help"``) or both."""
        if detail not in ("both", "metadata", "help"):
            raise ValueError(detail)
        with self._identity.lock:
            account = self._identity.accounts[email]
            account.validation_url, account.validation_detail = url, detail

    def clear_validation(self, email: str) -> None:
        """The user opened the validation URL and verified the account."""
        with self._identity.lock:
            self._identity.accounts[email].validation_url = None

    def suspend(self, email: str, suspended: bool = True) -> None:
        """A Terms-of-Service ban: every generate call, count and listing answers 403 with Google's message."""
        with self._identity.lock:
            self._identity.accounts[email].suspended = suspended

    def set_credits(self, email: str, amount: int | bool) -> None:
        """Google One AI credits: ``True`` for plenty, ``False`` for none, or an amount (a call costs
        CREDITS_PER_CALL). An exhausted model serves from them when the envelope enables GOOGLE_ONE_AI."""
        credits = 25_000 if amount is True else int(amount)
        with self._identity.lock:
            self._identity.accounts[email].credits = credits

    def credits_left(self, email: str) -> int:
        with self._identity.lock:
            return self._identity.accounts[email].credits

    # -- internals used by the handler --

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def _streams(self, delta: int) -> None:
        with self._lock:
            self.open_streams += delta

    def _take_injection(self, method: str) -> ApiError | None:
        with self._lock:
            for entry in self._injections:
                if entry[0] == method:
                    entry[2] -= 1
                    if entry[2] <= 0:
                        self._injections.remove(entry)
                    return entry[1]
        return None

    def _next_reply(self, email: str, model: str) -> Reply | None:
        with self._lock:
            for index, (reply, want_email, want_model) in enumerate(self._queue):
                if want_email in (None, email) and want_model in (None, model):
                    del self._queue[index]
                    return reply
        return None

    def _cached_tokens(self, email: str, session_id: str | None, prompt: int) -> int:
        """Prompt caching is keyed by account + sessionId (docs/upstream.md, "Request envelope")."""
        if not session_id:
            return 0
        with self._lock:
            previous = self._sessions.get((email, session_id))
            self._sessions[(email, session_id)] = prompt
        return min(previous, prompt) if previous and previous >= self.cache_min_tokens else 0

    def _check_client_headers(self, headers: dict[str, str]) -> None:
        """The real upstream gates on the client's User-Agent (docs/upstream.md, "Client version")."""
        if not self.require_headers:
            return
        agent = headers.get("user-agent", "")
        version = client_version(agent)
        if version is None:
            raise invalid(f'Unsupported client: the User-Agent must identify an antigravity client, got "{agent}".')
        if version_tuple(version) < version_tuple(self.min_client_version):
            raise google_error(400, VERSION_REFUSED, status="FAILED_PRECONDITION")
        content_type = headers.get("content-type", "")
        if not content_type.lower().startswith("application/json"):
            raise invalid(f'Invalid Content-Type "{content_type}": expected application/json.')

    def _check_project(self, project: Any, account: Account, optional: bool = False) -> None:
        if project is None and optional:
            return
        if project is None or project != account.project_id:
            resource = f"//cloudaicompanion.googleapis.com/projects/{project}"
            permission = "cloudaicompanion.companions.generateChat"
            raise google_error(403, f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).",
                               details=[{"@type": ERROR_INFO, "reason": "IAM_PERMISSION_DENIED",
                                         "domain": "cloudaicompanion.googleapis.com",
                                         "metadata": {"permission": permission, "resource": resource}}])

    def _model_info(self, model: Any, headers: dict[str, str]) -> dict[str, Any]:
        """Retired and unknown ids are not found; so are newer models for a client below their version."""
        info = self.models.get(model) if isinstance(model, str) else None
        if info is None or _is_internal(model, info):
            raise google_error(404, "Requested entity was not found.")
        needed = info.get("_min_version")
        version = client_version(headers.get("user-agent", "")) or "0"
        if needed and version_tuple(version) < version_tuple(needed):
            raise google_error(404, "Requested entity was not found.")
        return info

    def _prepare_call(self, body: dict[str, Any], account: Account, headers: dict[str, str]) -> _Call:
        """Parse errors (400), then project (403), then model (404), then the semantic rules (400)."""
        model = _get(body, "model")
        walker = _Walker(is_claude_model(self.models.get(model) if isinstance(model, str) else None))
        walker.envelope(body)
        walker.raise_if_any()
        self._check_project(_get(body, "project"), account)
        call = _Call(model, self._model_info(model, headers), _get(body, "request") or {}, account.email)
        _check_generate(call, self._identity.signer)
        _check_search(call, _get(body, "requestType"))
        return call

    def _project_json(self, account: Account) -> dict[str, str]:
        project = account.project_id or ""
        return {"id": project, "name": project, "projectNumber": account.project_number}

    def _onboard(self, account: Account) -> dict[str, Any]:
        """A long-running operation polled by re-POSTing (docs/upstream.md, "Project discovery")."""
        operation = f"operations/onboard-{account.user_id}"
        with self._identity.lock:
            if not account.project_id:
                account.onboard_calls += 1
                if account.onboard_calls <= self.onboard_polls:
                    return {"name": operation, "done": False}
                account.project_id = "onboarded-" + secrets.token_hex(4)
        return {"name": operation, "done": True, "response": {
            "@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse",
            "cloudaicompanionProject": self._project_json(account)}}

    def _check_standing(self, account: Account) -> None:
        """An account Google wants verified, or has banned, is refused whatever it asks (docs/upstream.md)."""
        with self._identity.lock:
            url, detail, suspended = account.validation_url, account.validation_detail, account.suspended
        if suspended:
            raise google_error(403, TOS_BANNED, status="PERMISSION_DENIED")
        if url is None:
            return
        details: list[dict[str, Any]] = [{"@type": ERROR_INFO, "reason": "VALIDATION_REQUIRED", "domain": DOMAIN,
                                          "metadata": {"validation_url": url} if detail != "help" else {}}]
        if detail != "metadata":
            details.append({"@type": HELP, "links": [{"description": "Verify your account", "url": url}]})
        raise google_error(403, VALIDATION_MESSAGE, status="PERMISSION_DENIED", details=details)

    def _check_quota(self, account: Account, model: str, credit_types: list[str]) -> None:
        """A model whose quota window is empty answers 429 QUOTA_EXHAUSTED, unless the envelope enables AI
        credits and the account has them (then the call is paid from them)."""
        now = datetime.now(timezone.utc)
        with self._lock:
            buckets = list(self._windows.items())
        empty = {window: bucket for (email, group, window), bucket in buckets
                 if email == account.email and model in self._group_models(group)
                 and not bucket.get("remainingFraction") and _after(bucket.get("resetTime"), now)}
        if not empty:
            return
        if "GOOGLE_ONE_AI" in credit_types:
            with self._identity.lock:
                if account.credits >= CREDITS_PER_CALL:
                    account.credits -= CREDITS_PER_CALL
                    return
            raise google_error(429, "Your Google One AI credit balance is too low for this request.",
                               details=[{"@type": ERROR_INFO, "reason": "INSUFFICIENT_G1_CREDITS_BALANCE",
                                         "domain": DOMAIN, "metadata": {"model": model}}])
        metadata: dict[str, str] = {"model": model}
        details: list[dict[str, Any]] = [{"@type": ERROR_INFO, "reason": "QUOTA_EXHAUSTED", "domain": DOMAIN,
                                          "metadata": metadata}]
        message = "You have exhausted your capacity on this model."
        if "5h" in empty and empty["5h"].get("resetTime"):
            reset = datetime.fromisoformat(empty["5h"]["resetTime"].replace("Z", "+00:00"))
            delay = (reset - now).total_seconds()
            metadata.update(quotaResetDelay=f"{delay:.3f}s", quotaResetTimeStamp=empty["5h"]["resetTime"])
            details.append({"@type": RETRY_INFO, "retryDelay": f"{delay:.3f}s"})
            message += f" Your quota will reset after {_human(delay)}."
        raise google_error(429, message, details=details)

    def _group_models(self, group: str) -> list[str]:
        return [model for model in QUOTA_GROUPS[group][1] if model in self.models]

    def _quota_summary(self, email: str) -> dict[str, Any]:
        """retrieveUserQuotaSummary: a group per model line, each with its 5-hour and weekly bucket."""
        now = datetime.now(timezone.utc)
        groups = []
        for group, (display, _) in QUOTA_GROUPS.items():
            models = self._group_models(group)
            if not models:
                continue
            buckets = []
            for window, (duration, label, length) in WINDOWS.items():
                with self._lock:
                    bucket = self._windows.get((email, group, window))
                if bucket is None:
                    bucket = {"remainingFraction": 1.0, "resetTime": _iso(now + length)}
                buckets.append({"bucketId": f"{group}-{window}", "window": duration, **bucket,
                                "displayName": label, "description": f"{label} for {display} models"})
            groups.append({"displayName": display, "description": f"Shared by {', '.join(models)}",
                           "modelIds": models, "buckets": buckets})
        return {"groups": groups}

    def _model_listing(self, email: str) -> dict[str, Any]:
        """Section 7.1: an object keyed by id; proto3 leaves false/zero fields out."""
        default_quota = {"remainingFraction": 1.0, "resetTime": _iso(datetime.now(timezone.utc) + timedelta(hours=5))}
        models: dict[str, Any] = {}
        for model, info in self.models.items():
            if _is_internal(model, info):
                models[model] = {"displayName": info.get("displayName", model)}
                continue
            entry = {k: v for k, v in info.items() if v and not k.startswith("_")}
            entry["recommended"] = True
            with self._lock:
                entry["quotaInfo"] = dict(self._quotas.get((email, model), default_quota))
            models[model] = entry
        listing: dict[str, Any] = {"models": models}
        searching = [model for model, info in self.models.items() if info.get("_search")]
        if searching:
            listing["webSearchModelIds"] = searching
        if self.deprecated_model_ids:
            listing["deprecatedModelIds"] = self.deprecated_model_ids
        return listing

    def _check_client(self, form: dict[str, str]) -> None:
        if not form.get("client_id"):
            raise oauth_error(400, "invalid_request", "Could not determine client ID from request.")
        if self.client_id is not None and form["client_id"] != self.client_id:
            raise oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if not form.get("client_secret"):
            raise oauth_error(400, "invalid_request", "client_secret is missing.")

    def _grant(self, form: dict[str, str]) -> dict[str, Any]:
        """The token endpoint (docs/upstream.md, "OAuth")."""
        self._check_client(form)
        grant = form.get("grant_type", "")
        if grant == "refresh_token":
            with self._identity.lock:
                email = self._identity.refresh_tokens.get(form.get("refresh_token", ""))
            if email is None:
                raise oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
            return self._token_answer(email)
        if grant == "authorization_code":
            return self._exchange_code(form)
        raise oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    def _token_answer(self, email: str, refresh_token: str | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = {"access_token": self._identity.mint(email, self.access_token_ttl),
                                  "expires_in": int(self.access_token_ttl), "scope": SCOPES, "token_type": "Bearer"}
        if refresh_token:
            answer["refresh_token"] = refresh_token
        return answer

    def _exchange_code(self, form: dict[str, str]) -> dict[str, Any]:
        with self._identity.lock:
            grant = self._identity.codes.get(form.get("code", ""))
            if grant is None:
                raise oauth_error(400, "invalid_grant", "Malformed auth code.")
            if grant["used"]:
                raise oauth_error(400, "invalid_grant", "Bad Request")
            if form.get("redirect_uri") != grant["redirect_uri"]:
                raise oauth_error(400, "redirect_uri_mismatch", "Bad Request")
            if grant["challenge"]:
                verifier = form.get("code_verifier", "")
                if not verifier:
                    raise oauth_error(400, "invalid_grant", "Missing code verifier.")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if (digest if grant["method"] == "S256" else verifier) != grant["challenge"]:
                    raise oauth_error(400, "invalid_grant", "Invalid code verifier.")
            grant["used"] = True
            refresh_token = None
            if self.issue_refresh_token:
                refresh_token = "1//fake-" + secrets.token_urlsafe(18)
                self._identity.refresh_tokens[refresh_token] = grant["email"]
        return self._token_answer(grant["email"], refresh_token)

    def _authorize(self, query: dict[str, str]) -> str:
        """Google's consent screen, already clicked through: 302 back with a code (docs/upstream.md, "OAuth").
        Test-only parameters: ``login_hint`` picks the account, ``test_error`` denies."""
        for name in ("client_id", "redirect_uri", "response_type", "scope"):
            if not query.get(name):
                raise ApiError(400, f"Error 400: invalid_request\nMissing required parameter: {name}")
        if query["response_type"] != "code":
            raise ApiError(400, "Error 400: unsupported_response_type")
        method = query.get("code_challenge_method", "plain" if query.get("code_challenge") else "")
        if method not in ("", "plain", "S256") or (method and not query.get("code_challenge")):
            raise ApiError(400, "Error 400: invalid_request\nInvalid code_challenge_method")
        with self._identity.lock:
            email = query.get("login_hint") or next(iter(self._identity.accounts), None)
            if email not in self._identity.accounts:
                raise ApiError(400, f"Error 400: no fake account for login_hint {email!r}")
        params = {"state": query["state"]} if "state" in query else {}
        if query.get("test_error"):
            params["error"] = query["test_error"]
        else:
            code = "4/0Afake" + secrets.token_urlsafe(24)
            with self._identity.lock:
                self._identity.codes[code] = {"email": email, "redirect_uri": query["redirect_uri"], "used": False,
                                              "challenge": query.get("code_challenge"), "method": method}
            params = {"code": code, **params, "scope": query["scope"]}
        separator = "&" if "?" in query["redirect_uri"] else "?"
        return query["redirect_uri"] + separator + urlencode(params)


# -- command line -----------------------------------------------------------------


def _write_accounts_file(path: str, account: Account) -> None:
    data = {"accounts": [{"email": account.email, "refreshToken": account.refresh_token,
                          "projectId": account.project_id, "enabled": True}]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(data, handle, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_cloudcode",
                                     description="Run the fake Cloud Code + OAuth server in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--accounts-file", help="write a gateway accounts file for the demo account here")
    args = parser.parse_args(argv)
    fake = FakeCloudCode(host=args.host, port=args.port)
    fake.verbose = True
    account = fake.add_account("demo@example.com", refresh_token="1//demo-refresh-token", project_id="demo-project")
    fake.start()
    print(f"GATEWAY_CLOUDCODE_URLS={fake.base_url}")
    print(f"GATEWAY_OAUTH_TOKEN_URL={fake.token_url}")
    if args.accounts_file:
        _write_accounts_file(args.accounts_file, account)
        print(f"GATEWAY_ACCOUNTS_FILE={os.path.abspath(args.accounts_file)}")
    else:
        print(f"# no --accounts-file: the demo account's refresh token is {account.refresh_token}")
    sys.stdout.flush()
    try:
        while not fake._stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

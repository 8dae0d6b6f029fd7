"""Web search as a server tool: the gateway searches the web (Google Search grounding) for the model.

Google refuses function declarations and ``googleSearch`` in one request (docs/upstream.md, "Web search"), so a
search is always an upstream call of its own, on a model the listing names in ``webSearchModelIds``:

* A request whose only tool is the search (what Claude Code's WebSearch sends) is answered by the search itself:
  its results and the search model's grounded answer, cited. One upstream call, on the search model.
* Beside other tools, the search is one more function for the model. When the model calls it, the gateway runs
  the search, gives the model what it found and lets it go on, up to ``max_uses`` searches: one more upstream call
  per search, and one per continuation.

A search that fails is a result that says so, never a failed request. ``WebSearch.run`` is the search alone, for
any client API that shows searches in its own shape.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from .catalog import ModelInfo
from .core.events import (
    Citation,
    Event,
    Finish,
    Grounding,
    KeepAlive,
    SignatureDelta,
    TextDelta,
    ThinkingDelta,
    ToolCallEvent,
    Usage,
    WebSearchEvent,
)
from .core.request import (
    Message,
    Part,
    Request,
    SearchResult,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    WebSearchOptions,
)
from .dispatch import Dispatcher, Outcome
from .engine.lane import NO_RESPONSE_TEXT
from .errors import GatewayError, NotFound, RateLimited
from .translate.grounding import cited_spans, findings_text

log = logging.getLogger(__name__)

# Searches per request when the client sets no max_uses.
DEFAULT_MAX_USES = 5
SEARCH_DESCRIPTION = (
    "Search the web with Google for current information, or anything past your knowledge. Returns the pages found "
    "(title and URL) and a summary of what they say. Cite the pages you use as markdown links."
)
SEARCH_PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "The search query"}},
    "required": ["query"],
}
FAILED_NOTE = ("A web search for this conversation failed ({error}). Answer without it, and say that no search "
               "results were available.")
# How a search request words its query ("Perform a web search for the query: ..."): not part of the query.
_INSTRUCTION = re.compile(r"^\s*(?:please\s+)?(?:perform|run|do|make)\s+an?\s+(?:web\s+)?search\s+for"
                          r"(?:\s+the\s+query)?\s*:\s*", re.IGNORECASE)
# Google's grounding links go through this redirector; the result's title then names the site.
_REDIRECT_HOST = "vertexaisearch.cloud.google.com"


def server_tool_id() -> str:
    return f"srvtoolu_{secrets.token_hex(12)}"


@dataclass
class Search:
    """One search, in the terms every client API renders: what was searched, found and answered, or why not."""

    id: str
    query: str
    results: list[SearchResult] = field(default_factory=list)
    # The search model's answer cut into spans, each with the citations backing it (none for the text between).
    spans: list[tuple[str, tuple[Citation, ...]]] = field(default_factory=list)
    # What the upstream actually searched for.
    queries: list[str] = field(default_factory=list)
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.spans)

    def event(self) -> WebSearchEvent:
        return WebSearchEvent(self.id, self.query, list(self.results), self.error)

    def deltas(self) -> list[TextDelta]:
        return [TextDelta(text, citations) for text, citations in self.spans if text]

    def findings(self) -> str:
        """What a model is told about the search."""
        return findings_text(self.query, self.results, self.text, self.error)


class WebSearch:
    """Runs searches through the dispatcher (account choice, retries) and answers requests that allow them."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def events(self, request: Request, outcome: Outcome, model: ModelInfo) -> Iterator[Event]:
        """The answer to ``request`` as canonical events: the dispatcher's own when it allows no search."""
        options = request.web_search
        choice = request.tool_choice
        if options is None or request.grounded or (choice is not None and choice.mode == "none"):
            return self.dispatcher.events(request, outcome, model)
        if request.tools:
            return self._tool_loop(request, options, outcome, model)
        return self._search_only(request, options, outcome, model)

    def run(
        self,
        query: str,
        options: WebSearchOptions | None = None,
        *,
        messages: list[Message] | None = None,
        system: Sequence[str] = (),
        outcome: Outcome | None = None,
        prefer: ModelInfo | None = None,
    ) -> Generator[KeepAlive, None, Search]:
        """Search the web for ``query`` (or answer ``messages``, a conversation, grounded in a search).

        A generator that returns the Search: it yields keep-alives while it waits for an account, so a streaming
        caller can pass them on (``search = yield from searcher.run(...)``). ``outcome`` records the upstream call
        (its account, attempts, usage) but keeps the models it names: the search model is ``Search.model``.
        """
        search = Search(id=server_tool_id(), query=query)
        model = self._search_model(prefer)
        if model is None:
            log.warning("no model can search the web: the upstream's listing names none (webSearchModelIds)")
            search.error = "unavailable"
            return search
        search.model = model.id
        request = Request(
            model=model.id,
            messages=messages or [Message(role="user", parts=[Text(query)])],
            system=[*system, *_hints(options)],
            stream=True,
            grounded=True,
        )
        outcome = outcome if outcome is not None else Outcome()
        requested, answered = outcome.requested, outcome.model
        text: list[str] = []
        grounding: Grounding | None = None
        try:
            with closing(self.dispatcher.events(request, outcome, model)) as events:
                for event in events:
                    if isinstance(event, KeepAlive):
                        yield event
                    elif isinstance(event, TextDelta):
                        text.append(event.text)
                    elif isinstance(event, Grounding):
                        grounding = event  # each report covers the whole answer so far
                    elif isinstance(event, Finish):
                        search.usage = event.usage
        except RateLimited as exc:
            log.warning("web search for %r: %s", query, exc.message)
            search.error = "too_many_requests"
        except GatewayError as exc:
            log.warning("web search for %r failed: %s", query, exc.message)
            search.error = "unavailable"
        finally:
            outcome.requested, outcome.model = requested, answered
        answer = "".join(text)
        if search.error is None and grounding is None and answer == NO_RESPONSE_TEXT:
            search.error = "unavailable"
        if search.error is None:
            _take_findings(search, answer, grounding, options)
        return search

    # -- answers ------------------------------------------------------------------------------------------

    def _search_only(
        self, request: Request, options: WebSearchOptions, outcome: Outcome, model: ModelInfo
    ) -> Iterator[Event]:
        """The search answers: its results, then the search model's grounded answer to the conversation."""
        query = user_query(request.messages)
        if not query:
            search = Search(id=server_tool_id(), query="", error="invalid_tool_input")
        else:
            search = yield from self.run(query, options, messages=_text_only(request.messages),
                                         system=request.system, outcome=outcome, prefer=model)
        if search.error is None:
            outcome.model = search.model
        yield search.event()
        if search.error is None:
            yield from search.deltas()
            outcome.usage = replace(search.usage, searches=1)
            yield Finish(reason="end_turn", usage=outcome.usage)
            return
        # Nothing found: the model the client named answers, knowing the search failed, rather than nobody.
        plain = replace(request, web_search=None, tool_choice=None,
                        system=[*request.system, FAILED_NOTE.format(error=search.error)])
        yield from self.dispatcher.events(plain, outcome, model)

    def _tool_loop(
        self, request: Request, options: WebSearchOptions, outcome: Outcome, model: ModelInfo
    ) -> Iterator[Event]:
        """The model's turns, with every search it asks for run by the gateway and its findings handed back."""
        name = _free_name(options.name, request.tools)
        limit = options.max_uses or DEFAULT_MAX_USES
        turn = replace(request, web_search=None,
                       tools=[*request.tools, Tool(name, SEARCH_DESCRIPTION, SEARCH_PARAMETERS)],
                       tool_choice=_renamed_choice(request.tool_choice, options.name, name))
        total, searched, used = Usage(), 0, 0
        finish = Finish(reason="end_turn", usage=Usage())
        for _ in range(limit + 2):  # the searches allowed, a turn told it asked for too many, the answer
            parts: list[Part] = []
            calls: list[ToolCallEvent] = []
            client_calls: list[ToolCallEvent] = []  # shown after the searches, as Anthropic orders them
            with closing(self.dispatcher.events(turn, outcome, model)) as events:
                for event in events:
                    if isinstance(event, Finish):
                        finish = event
                    elif isinstance(event, ToolCallEvent):
                        (calls if event.name == name else client_calls).append(event)
                        parts.append(ToolCall(event.id, event.name, event.arguments, event.signature))
                    else:
                        _record(parts, event)
                        yield event
            total += finish.usage
            if not calls:
                yield from client_calls
                break
            results: list[Part] = []
            for call in calls:
                query = call.arguments.get("query")
                if not isinstance(query, str) or not query.strip():
                    search = Search(id=server_tool_id(), query=str(query or ""), error="invalid_tool_input")
                elif used >= limit:
                    search = Search(id=server_tool_id(), query=query, error="max_uses_exceeded")
                else:
                    used += 1
                    search = yield from self.run(query.strip(), options, outcome=outcome)
                    total += search.usage
                    searched += search.error is None
                yield search.event()
                results.append(ToolResult(call.id, [Text(search.findings())], is_error=search.error is not None,
                                          name=name))
            if client_calls:
                yield from client_calls
                break  # the client runs its own tools first; the findings are in the answer it sends back
            turn = replace(turn, messages=[*turn.messages, Message("assistant", parts), Message("user", results)],
                           tool_choice=_after_search(turn.tool_choice, name))
        else:  # still searching after every turn allowed: the answer ends here, with nothing for the client to run
            finish = replace(finish, reason="end_turn")
        outcome.usage = replace(total, searches=searched)
        yield replace(finish, usage=outcome.usage)

    def _search_model(self, prefer: ModelInfo | None) -> ModelInfo | None:
        """A model the listing says can search: the one asked for if it can, else the first listed."""
        dispatcher = self.dispatcher
        dispatcher.before_resolve()
        names = dispatcher.catalog.search_models
        if prefer is not None and prefer.id in names and prefer.tier is None:
            return prefer
        for name in names:
            try:
                model = dispatcher.catalog.resolve(name)
            except NotFound:
                continue
            if model.id in names:
                return model
        return None


# -- pieces -------------------------------------------------------------------------------------------------


def user_query(messages: list[Message]) -> str:
    """What the last user turn asks to search for: its text, without a "Perform a web search for:" wording."""
    for message in reversed(messages):
        if message.role == "user":
            text = " ".join(p.text.strip() for p in message.parts if isinstance(p, Text) and p.text.strip())
            return _INSTRUCTION.sub("", text).strip()
    return ""


def _text_only(messages: list[Message]) -> list[Message]:
    """The conversation as a search model takes it: text only (no function declarations may accompany a search)."""
    kept = [Message(m.role, [p for p in m.parts if isinstance(p, Text) and p.text.strip()]) for m in messages]
    return [m for m in kept if m.parts]


def _hints(options: WebSearchOptions | None) -> list[str]:
    """What the search model is told of the client's limits; the gateway still filters the results itself."""
    if options is None:
        return []
    hints = []
    if options.allowed_domains:
        hints.append("Search only these sites: " + ", ".join(options.allowed_domains) + ".")
    if options.blocked_domains:
        hints.append("Leave out results from these sites: " + ", ".join(options.blocked_domains) + ".")
    where = options.location
    if where is not None:
        place = ", ".join(p for p in (where.city, where.region, where.country) if p)
        if place or where.timezone:
            hints.append(f"The user is in {place or 'the time zone ' + str(where.timezone)}"
                         + (f" (time zone {where.timezone})." if place and where.timezone else "."))
    return hints


def _take_findings(search: Search, answer: str, grounding: Grounding | None, options: WebSearchOptions | None) -> None:
    """The results the client may see (its domain limits applied, each page once) and the cited answer."""
    if grounding is None:
        search.spans = [(answer, ())] if answer else []
        return
    search.queries = list(grounding.queries)
    position: dict[int, int] = {}  # the upstream's chunk index -> the result's index
    seen: dict[str, int] = {}
    for index, source in enumerate(grounding.sources):
        if not source.url or not _allowed(source, options):
            continue
        if source.url not in seen:
            seen[source.url] = len(search.results)
            search.results.append(source)
        position[index] = seen[source.url]
    for text, sources in cited_spans(answer, grounding.supports):
        kept = list(dict.fromkeys(position[i] for i in sources if i in position))
        citations = tuple(Citation(search.results[k].url, search.results[k].title, text, k) for k in kept)
        search.spans.append((text, citations))


def _allowed(result: SearchResult, options: WebSearchOptions | None) -> bool:
    if options is None:
        return True
    if options.allowed_domains and not _on_any(result, options.allowed_domains):
        return False
    return not _on_any(result, options.blocked_domains)


def _on_any(result: SearchResult, domains: Sequence[str]) -> bool:
    """Whether the result is on one of ``domains`` (a domain covers its subdomains; ``site.com/docs`` a path)."""
    url = urlsplit(result.url)
    host, path = (url.hostname or "").lower(), url.path or "/"
    if host == _REDIRECT_HOST or host.endswith("." + _REDIRECT_HOST):
        title = result.title.strip().lower()
        host, path = (title, "/") if "." in title and " " not in title else ("", "/")
    for domain in domains:
        site, _, prefix = re.sub(r"^[a-z]+://", "", domain.strip().lower()).partition("/")
        site = site.removeprefix("www.")
        if host and (host == site or host.endswith("." + site)) and path.startswith("/" + prefix):
            return True
    return False


def _free_name(name: str, tools: list[Tool]) -> str:
    """The search's function name, moved aside when a client function already has it."""
    taken = {tool.name for tool in tools}
    while name in taken:
        name = "google_" + name
    return name


def _renamed_choice(choice: ToolChoice | None, asked: str, name: str) -> ToolChoice | None:
    if choice is None or asked == name:
        return choice
    allowed = tuple(name if n == asked else n for n in choice.allowed)
    return replace(choice, name=name if choice.name == asked else choice.name, allowed=allowed)


def _after_search(choice: ToolChoice | None, name: str) -> ToolChoice | None:
    """A choice that made the model call a tool is met once it searched: forcing it again would loop."""
    if choice is None or choice.mode == "any" or (choice.mode == "tool" and choice.name == name):
        return None
    return choice


def _record(parts: list[Part], event: Event) -> None:
    """Keep the model's turn as a canonical message, to send it back with the findings."""
    if isinstance(event, ThinkingDelta):
        if not parts or not isinstance(parts[-1], Thinking) or parts[-1].signature:
            parts.append(Thinking(""))
        parts[-1].text += event.text  # type: ignore[union-attr]
    elif isinstance(event, SignatureDelta):
        if parts and isinstance(parts[-1], Thinking):
            parts[-1].signature = event.signature
        else:
            parts.append(Thinking("", event.signature))  # Gemini signs the part after its thoughts
    elif isinstance(event, TextDelta):
        if parts and isinstance(parts[-1], Text):
            parts[-1].text += event.text
        else:
            parts.append(Text(event.text))

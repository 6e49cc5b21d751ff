"""What real Slack refuses in a message, a view or a response_url payload: Block Kit rules, limits and Slack's errors.

Sources, cited per limit below: [S] Slack's Block Kit reference (docs.slack.dev/reference/block-kit), [T] the doc
comments of `@slack/types` 3.2.0 (tests/slack_types), [P] slack_sdk 3.48's model validators, [M] Slack's method
pages (errors lists, mirrored in smstoslack/slack_kit `lib/slack/web/docs/*.json`), [I] public issue threads.
Lengths are counted in UTF-16 code units, as Slack's clients count them (an emoji outside the BMP counts 2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MESSAGE_BLOCKS = 50  # [S] blocks reference; [P] `Message`
VIEW_BLOCKS = 100  # [S]; [T] `BaseView.blocks`; [P] `View.blocks_max_length`
# The total-text cap behind `msg_blocks_too_long` is undocumented. 12,000 is the figure a Slack engineer gave
# ("12,000 text characters with a buffer for block containers", [I] slackapi/bolt-js#2509) and the markdown block's
# documented cumulative limit. Reported refusals range from ~13,300 (markdown blocks only, #2509) down to 11,341
# summed over 45 blocks (#2867: block containers count too), so renderers should budget below it.
BLOCKS_TEXT_TOTAL = 12_000
MESSAGE_TEXT = 40_000  # [M] chat.postMessage "truncate messages containing more than 40,000 characters"
ATTACHMENTS = 100  # [M] too_many_attachments: "A maximum of 100 attachments are allowed on a message"
VIEW_BYTES = 250_000  # [M] views.publish view_too_large: "greater than 250kb"
ID = 255  # [T] block_id, action_id, callback_id; [P] `block_id_max_length`, `action_id_max_length`
TEXT = 3000  # [T] PlainTextElement / MrkdwnElement text; [S] section text
FIELD = 2000  # [T] section `fields` item text; [S]
HEADER = 150  # [T] HeaderBlock; [P] `HeaderBlock.text_max_length`
BUTTON_TEXT = 75  # [T] Button text / accessibility_label; [P]
BUTTON_VALUE = 2000  # [T] Button value; [P]
URL = 3000  # [T] Button url, option url, image_url; [P]
OPTION_TEXT = 75  # [T] option text / description, option group label; [P]
OPTION_VALUE = 150  # [S] option object; [P] `Option.value_max_length` ([T] still says 75)
PLACEHOLDER = 150  # [T] `Placeholdable`; [P]
ALT_TEXT = 2000  # [T] ImageBlock alt_text / title; [P]
LABEL = 2000  # [T] InputBlock label / hint; [P]
MARKDOWN = 12_000  # [T] MarkdownBlock; [P]
MODAL_TITLE = 24  # [T] ModalView title / close / submit; [P] `View.title_max_length`
PRIVATE_METADATA = 3000  # [T] BaseView; [P]
_BROADCAST = re.compile(r"<!(channel|here|everyone)(\|[^>]*)?>")

KNOWN_BLOCKS = {  # [T] `KnownBlock`; the ones without a checker below are only id-checked
    "actions", "alert", "card", "carousel", "container", "context", "context_actions", "data_table", "divider",
    "file", "header", "image", "input", "markdown", "rich_text", "section", "table", "task_card", "plan", "video",
}  # fmt: skip
_SELECTS = {"static_select", "users_select", "conversations_select", "channels_select", "external_select"}
_MULTI = {f"multi_{s}" for s in _SELECTS}
_PICKERS = {"checkboxes", "datepicker", "datetimepicker", "radio_buttons", "timepicker"}
ACTIONS_ELEMENTS = {"button", "overflow", "workflow_button", "rich_text_input", *_SELECTS, *_MULTI, *_PICKERS}  # [T]
ACCESSORIES = {"button", "image", "overflow", "workflow_button", *_SELECTS, *_MULTI, *_PICKERS}  # [T]
_TEXT_INPUTS = {"email_text_input", "number_input", "plain_text_input", "rich_text_input", "url_text_input"}
INPUT_ELEMENTS = {"file_input", *_TEXT_INPUTS, *_SELECTS, *_MULTI, *_PICKERS}  # [T] `InputBlockElement`
KNOWN_ELEMENTS = ACTIONS_ELEMENTS | ACCESSORIES | INPUT_ELEMENTS | {"feedback_buttons", "icon_button"}
_ELEMENT_KEYS = {  # [T] the element interfaces (with `Actionable`, `Confirmable`, `Focusable`, `Placeholdable`)
    "button": {"type", "action_id", "text", "value", "url", "style", "confirm", "accessibility_label"},
    "overflow": {"type", "action_id", "options", "confirm"},
    "users_select": {"type", "action_id", "placeholder", "initial_user", "confirm", "focus_on_load"},
    "static_select": {"type", "action_id", "placeholder", "options", "option_groups", "initial_option", "confirm"}
    | {"focus_on_load"},
    "plain_text_input": {"type", "action_id", "placeholder", "initial_value", "multiline", "min_length"}
    | {"max_length", "dispatch_action_config", "focus_on_load"},
    "image": {"type", "image_url", "slack_file", "alt_text"},
}


@dataclass(frozen=True)
class Refusal:
    """Slack's answer to a payload it will not take: its `error` code and `messages` ("[ERROR] … [json-pointer:…]")."""

    error: str
    messages: tuple[str, ...] = ()
    detail: str = ""  # what the fake measured, for the test report (Slack itself may say no more than `error`)


@dataclass(frozen=True)
class Finding:
    """A payload Slack accepts that the bot must still not send (`code`), e.g. blocks without a notification text."""

    code: str
    message: str


@dataclass
class Verdict:
    """The outcome of one check: a refusal (or None when Slack takes it) plus any policy findings."""

    refusal: Refusal | None = None
    findings: list[Finding] = field(default_factory=list)


def units(text: str) -> int:
    """A string's length as Slack counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def blocks_text(node: Any) -> int:
    """The total text Slack counts against `msg_blocks_too_long`: every `text` string anywhere in the blocks."""
    if isinstance(node, Mapping):
        own = units(node["text"]) if isinstance(node.get("text"), str) else 0
        return own + sum(blocks_text(v) for k, v in node.items() if not (k == "text" and isinstance(v, str)))
    if isinstance(node, list):
        return sum(blocks_text(v) for v in node)
    return 0


class _Check:
    """One walk over a payload: the errors Slack would list, the ids seen so far, and policy findings."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.findings: list[Finding] = []
        self.block_ids: dict[str, str] = {}
        self.action_ids: dict[str, str] = {}

    def error(self, ptr: str, message: str) -> None:
        self.errors.append(f"[ERROR] {message} [json-pointer:{ptr}]")

    def keys(self, obj: Mapping[str, Any], ptr: str, allowed: set[str]) -> None:
        for key in obj:
            if key not in allowed:
                self.error(f"{ptr}/{key}", f"invalid additional property: {key}")

    def string(self, value: Any, ptr: str, limit: int, *, minimum: int = 0) -> None:
        if not isinstance(value, str):
            self.error(ptr, "must provide a string")
            return
        if units(value) < minimum:
            self.error(ptr, f"must be more than {minimum - 1} characters")
        if units(value) > limit:
            self.error(ptr, f"must be less than {limit + 1} characters")

    def array(self, value: Any, ptr: str, maximum: int, minimum: int = 1) -> list[Any]:
        if not isinstance(value, list):
            self.error(ptr, "must provide an array")
            return []
        if len(value) < minimum:
            self.error(ptr, f"must provide at least {minimum} items")
        if len(value) > maximum:
            self.error(ptr, f"no more than {maximum} items allowed")
        return value

    def text(self, obj: Any, ptr: str, limit: int, *, plain: bool = False) -> None:
        """A text object; `plain` where Slack takes plain_text only (header, button, option, placeholder, title…)."""
        if not isinstance(obj, Mapping):
            self.error(ptr, "must provide an object")
            return
        kind = obj.get("type")
        if kind not in ("plain_text", "mrkdwn"):
            self.error(f"{ptr}/type", "must be one of: plain_text, mrkdwn")
            return
        if plain and kind != "plain_text":
            self.error(f"{ptr}/type", "must be plain_text")
            return
        flag = "emoji" if kind == "plain_text" else "verbatim"  # [T] emoji only on plain_text, verbatim on mrkdwn
        self.keys(obj, ptr, {"type", "text", flag})
        if flag in obj and not isinstance(obj[flag], bool):
            self.error(f"{ptr}/{flag}", "must be a boolean")
        self.string(obj.get("text"), f"{ptr}/text", limit, minimum=1)

    def optional_text(self, obj: Mapping[str, Any], key: str, ptr: str, limit: int, *, plain: bool = True) -> None:
        if key in obj:
            self.text(obj[key], f"{ptr}/{key}", limit, plain=plain)

    def block_id(self, block: Mapping[str, Any], ptr: str) -> None:
        if "block_id" not in block:
            return
        value = block["block_id"]
        self.string(value, f"{ptr}/block_id", ID, minimum=1)
        if isinstance(value, str) and value in self.block_ids:  # [T] "unique for each message"; [I] slack-go#725
            self.error(f"{ptr}/block_id", f'`block_id` "{value}" already exists')
        elif isinstance(value, str):
            self.block_ids[value] = ptr

    def action_id(self, element: Mapping[str, Any], ptr: str, in_block: dict[str, str]) -> None:
        if "action_id" not in element:
            return
        value = element["action_id"]
        self.string(value, f"{ptr}/action_id", ID, minimum=1)
        if not isinstance(value, str):
            return
        if value in in_block:  # [I] ColeMurray/background-agents#868, knacklabs/gantry#458: refused, invalid_blocks
            self.error(f"{ptr}/action_id", f'`action_id` "{value}" already exists')
        elif value in self.action_ids:  # Slack is only known to refuse this within one block: the bot's own rule
            first = self.action_ids[value]
            self.findings.append(Finding("action_id_reused", f'`action_id` "{value}" at {ptr} is also at {first}'))
        in_block.setdefault(value, ptr)
        self.action_ids.setdefault(value, ptr)

    # ---- blocks ---------------------------------------------------------------------------------------------

    def blocks(self, value: Any, ptr: str, maximum: int) -> None:
        for i, block in enumerate(self.array(value, ptr, maximum, minimum=0)):
            self.block(block, f"{ptr}/{i}")

    def block(self, block: Any, ptr: str) -> None:
        if not isinstance(block, Mapping):
            self.error(ptr, "must provide an object")
            return
        kind = block.get("type")
        if kind not in KNOWN_BLOCKS:
            self.error(f"{ptr}/type", f"unsupported type: {kind}")
            return
        self.block_id(block, ptr)
        check = getattr(self, f"block_{kind}", None)
        if check is not None:
            check(block, ptr)

    def block_section(self, b: Mapping[str, Any], ptr: str) -> None:
        self.keys(b, ptr, {"type", "block_id", "text", "fields", "accessory", "expand"})
        if b.get("text") is None and b.get("fields") is None:
            self.error(ptr, "must define either `text` or `fields`")
        if "text" in b:
            self.text(b["text"], f"{ptr}/text", TEXT)
        if "fields" in b:
            for j, item in enumerate(self.array(b["fields"], f"{ptr}/fields", 10)):  # [T] max 10 × 2000
                self.text(item, f"{ptr}/fields/{j}", FIELD)
        if "accessory" in b:
            self.element(b["accessory"], f"{ptr}/accessory", ACCESSORIES, {})

    def block_header(self, b: Mapping[str, Any], ptr: str) -> None:
        self.keys(b, ptr, {"type", "block_id", "text"})
        self.text(b.get("text"), f"{ptr}/text", HEADER, plain=True)

    def block_context(self, b: Mapping[str, Any], ptr: str) -> None:
        self.keys(b, ptr, {"type", "block_id", "elements"})
        for j, item in enumerate(self.array(b.get("elements"), f"{ptr}/elements", 10)):  # [T] max 10
            if isinstance(item, Mapping) and item.get("type") == "image":
                self.element(item, f"{ptr}/elements/{j}", {"image"}, {})
            else:
                self.text(item, f"{ptr}/elements/{j}", TEXT)

    def block_actions(self, b: Mapping[str, Any], ptr: str) -> None:
        self.keys(b, ptr, {"type", "block_id", "elements"})
        in_block: dict[str, str] = {}
        for j, item in enumerate(self.array(b.get("elements"), f"{ptr}/elements", 25)):  # [T] max 25
            self.element(item, f"{ptr}/elements/{j}", ACTIONS_ELEMENTS, in_block)

    def block_divider(self, b: Mapping[str, Any], ptr: str) -> None:
        self.keys(b, ptr, {"type", "block_id"})

    def block_image(self, b: Mapping[str, Any], ptr: str) -> None:
        self.keys(b, ptr, {"type", "block_id", "image_url", "slack_file", "alt_text", "title"})
        self.image_source(b, ptr)
        self.string(b.get("alt_text"), f"{ptr}/alt_text", ALT_TEXT, minimum=1)
        self.optional_text(b, "title", ptr, ALT_TEXT)

    def block_input(self, b: Mapping[str, Any], ptr: str) -> None:
        self.keys(b, ptr, {"type", "block_id", "label", "element", "hint", "optional", "dispatch_action"})
        self.text(b.get("label"), f"{ptr}/label", LABEL, plain=True)
        self.optional_text(b, "hint", ptr, LABEL)
        self.element(b.get("element"), f"{ptr}/element", INPUT_ELEMENTS, {})

    def block_markdown(self, b: Mapping[str, Any], ptr: str) -> None:
        self.keys(b, ptr, {"type", "block_id", "text"})
        self.string(b.get("text"), f"{ptr}/text", MARKDOWN, minimum=1)

    # ---- elements and composition objects ----------------------------------------------------------------------

    def element(self, e: Any, ptr: str, allowed: set[str], in_block: dict[str, str]) -> None:
        if not isinstance(e, Mapping):
            self.error(ptr, "must provide an object")
            return
        kind = e.get("type")
        if kind not in allowed:
            where = "unsupported type" if kind not in KNOWN_ELEMENTS else "type not allowed here"
            self.error(f"{ptr}/type", f"{where}: {kind}")
            return
        if kind in _ELEMENT_KEYS:
            self.keys(e, ptr, _ELEMENT_KEYS[kind])
        if kind != "image":
            self.action_id(e, ptr, in_block)
        self.optional_text(e, "placeholder", ptr, PLACEHOLDER)
        if "confirm" in e:
            self.confirm(e["confirm"], f"{ptr}/confirm")
        if kind == "button":
            self.text(e.get("text"), f"{ptr}/text", BUTTON_TEXT, plain=True)
            for key, limit in (("value", BUTTON_VALUE), ("url", URL), ("accessibility_label", BUTTON_TEXT)):
                if key in e:
                    self.string(e[key], f"{ptr}/{key}", limit, minimum=1)
            if "style" in e and e["style"] not in ("primary", "danger"):
                self.error(f"{ptr}/style", "must be one of: primary, danger")
        elif kind == "image":
            self.image_source(e, ptr)
            self.string(e.get("alt_text"), f"{ptr}/alt_text", ALT_TEXT, minimum=1)
        elif kind in ("static_select", "multi_static_select"):
            self.select_options(e, ptr)
        elif kind == "overflow":  # [P] 1–5 options ([T] "up to 5"); options may carry a url here only
            for j, option in enumerate(self.array(e.get("options"), f"{ptr}/options", 5)):
                self.option(option, f"{ptr}/options/{j}", with_url=True)
        elif kind in ("checkboxes", "radio_buttons"):  # [T] max 10 options, mrkdwn text allowed
            for j, option in enumerate(self.array(e.get("options"), f"{ptr}/options", 10)):
                self.option(option, f"{ptr}/options/{j}", plain=False)
        elif kind == "plain_text_input":
            for key in ("min_length", "max_length"):  # [T] min_length ≤ 3000
                if key in e and not (isinstance(e[key], int) and 0 <= e[key] <= TEXT):
                    self.error(f"{ptr}/{key}", f"must be between 0 and {TEXT}")

    def image_source(self, obj: Mapping[str, Any], ptr: str) -> None:
        if ("image_url" in obj) == ("slack_file" in obj):  # [T] `UrlImageObject | SlackFileImageObject`
            self.error(ptr, "must provide exactly one of `image_url` or `slack_file`")
        if "image_url" in obj:
            self.string(obj["image_url"], f"{ptr}/image_url", URL, minimum=1)

    def select_options(self, e: Mapping[str, Any], ptr: str) -> None:
        if ("options" in e) == ("option_groups" in e):  # [T] one of the two
            self.error(ptr, "must provide exactly one of `options` or `option_groups`")
        if "options" in e:
            for j, option in enumerate(self.array(e["options"], f"{ptr}/options", 100)):  # [T] max 100
                self.option(option, f"{ptr}/options/{j}")
        for g, group in enumerate(self.array(e.get("option_groups", []), f"{ptr}/option_groups", 100, 0)):
            gptr = f"{ptr}/option_groups/{g}"
            if not isinstance(group, Mapping):
                self.error(gptr, "must provide an object")
                continue
            self.keys(group, gptr, {"label", "options"})
            self.text(group.get("label"), f"{gptr}/label", OPTION_TEXT, plain=True)
            for j, option in enumerate(self.array(group.get("options"), f"{gptr}/options", 100)):
                self.option(option, f"{gptr}/options/{j}")
        if "initial_option" in e:
            self.option(e["initial_option"], f"{ptr}/initial_option")

    def option(self, o: Any, ptr: str, *, plain: bool = True, with_url: bool = False) -> None:
        if not isinstance(o, Mapping):
            self.error(ptr, "must provide an object")
            return
        self.keys(o, ptr, {"text", "value", "description", *(["url"] if with_url else [])})
        self.text(o.get("text"), f"{ptr}/text", OPTION_TEXT, plain=plain)
        if "value" in o:
            self.string(o["value"], f"{ptr}/value", OPTION_VALUE, minimum=1)
        self.optional_text(o, "description", ptr, OPTION_TEXT, plain=plain)
        if "url" in o:
            self.string(o["url"], f"{ptr}/url", URL, minimum=1)

    def confirm(self, c: Any, ptr: str) -> None:
        if not isinstance(c, Mapping):
            self.error(ptr, "must provide an object")
            return
        self.keys(c, ptr, {"title", "text", "confirm", "deny", "style"})  # [T] `Confirm`: 100 / 300 / 30 / 30
        self.optional_text(c, "title", ptr, 100)
        self.text(c.get("text"), f"{ptr}/text", 300)
        self.optional_text(c, "confirm", ptr, 30)
        self.optional_text(c, "deny", ptr, 30)


# ---- the three surfaces -------------------------------------------------------------------------------------


def check_message(args: Mapping[str, Any], *, method: str, previous: list[Any] | None = None) -> Verdict:
    """A `chat.*` message (or a `response_url` payload, `method="response_url"`) as Slack would judge it;
    `previous` is the stored message's blocks for `chat.update`."""
    blocks, text = args.get("blocks"), args.get("text")
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    attachments = args.get("attachments")
    if blocks is not None and not isinstance(blocks, list):  # [M] not JSON, or not an array
        return Verdict(Refusal("invalid_blocks_format", detail=f"blocks is a {type(blocks).__name__}"))
    if args.get("markdown_text") and (text or blocks):  # [M] markdown_text_conflict
        return Verdict(Refusal("markdown_text_conflict"))
    deleting = method == "response_url" and args.get("delete_original")
    if not (text.strip() or blocks or attachments or args.get("markdown_text") or deleting):
        return Verdict(Refusal("no_text"))  # [M] "No message text provided"
    if isinstance(attachments, list) and len(attachments) > ATTACHMENTS:
        return Verdict(Refusal("too_many_attachments", detail=f"{len(attachments)} attachments"))
    check = _Check()
    if blocks is not None:
        check.blocks(blocks, "/blocks", MESSAGE_BLOCKS)
    if check.errors:
        return Verdict(Refusal("invalid_blocks", tuple(check.errors)), check.findings)
    verdict = Verdict(findings=check.findings)
    total = blocks_text(blocks or [])
    if total > BLOCKS_TEXT_TOTAL:
        detail = f"{total:,} characters of text across {len(blocks or [])} blocks (cap {BLOCKS_TEXT_TOTAL:,})"
        if method != "response_url":
            return Verdict(Refusal("msg_blocks_too_long", detail=detail), check.findings)
        # [I] bolt-js#2867 reports respond() taking blocks that chat.postMessage refuses: not a refusal here
        verdict.findings.append(Finding("msg_blocks_too_long", f"{detail}; chat.postMessage would refuse this"))
    if units(text) > MESSAGE_TEXT:
        if method != "chat.postMessage":  # [M] chat.update / chat.postEphemeral list msg_too_long
            return Verdict(Refusal("msg_too_long", detail=f"text is {units(text):,} characters"), check.findings)
        verdict.findings.append(Finding("text_truncated", f"text is {units(text):,} characters; Slack cuts it"))
    verdict.findings.extend(_message_findings(blocks, text, previous))
    return verdict


def _message_findings(blocks: list[Any] | None, text: str, previous: list[Any] | None) -> Iterator[Finding]:
    if blocks and not text.strip():  # Slack accepts it; slack_sdk warns; notifications then show nothing useful
        yield Finding("missing_text", "blocks without a top-level `text` (the notification and screen-reader text)")
    for ptr, value in [("text", text), *_texts(blocks or [], "/blocks")]:
        found = _BROADCAST.search(value)
        if found:  # a name or description from metadata that went out unescaped
            code = "broadcast_in_text" if ptr == "text" else "broadcast_in_blocks"
            yield Finding(code, f"{ptr} notifies everyone: {found.group(0)}")
    old = {b["block_id"]: b for b in previous or [] if isinstance(b, Mapping) and "block_id" in b}
    for i, block in enumerate(blocks or []):
        before = old.get(block.get("block_id")) if isinstance(block, Mapping) else None
        if before is not None and before != block:  # [T] "If a message is updated, use a new `block_id`"
            yield Finding("block_id_reused", f"/blocks/{i} changed but kept block_id {block['block_id']!r}")


def _texts(node: Any, ptr: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield f"{ptr}/text", value
            else:
                yield from _texts(value, f"{ptr}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _texts(value, f"{ptr}/{i}")


def check_view(view: Any, *, method: str) -> Verdict:
    """A `views.*` payload: Slack answers `invalid_arguments` with the reasons in `response_metadata.messages`."""
    if not isinstance(view, Mapping):
        return Verdict(Refusal("invalid_arguments", ("[ERROR] must provide an object [json-pointer:/view]",)))
    if len(json.dumps(view).encode()) > VIEW_BYTES:
        return Verdict(Refusal("view_too_large"))
    check = _Check()
    kinds = {"views.publish": {"home"}, "views.update": {"home", "modal"}}.get(method, {"modal"})
    kind = view.get("type")
    if kind not in kinds:
        check.error("/view/type", f"must be one of: {', '.join(sorted(kinds))}")
    common = {"type", "blocks", "private_metadata", "callback_id", "external_id"}
    modal = {"title", "close", "submit", "clear_on_close", "notify_on_close", "submit_disabled"}
    check.keys(view, "/view", common | (modal if kind == "modal" else set()))
    check.blocks(view.get("blocks"), "/view/blocks", VIEW_BLOCKS)
    if kind == "modal":
        check.text(view.get("title"), "/view/title", MODAL_TITLE, plain=True)
        check.optional_text(view, "close", "/view", MODAL_TITLE)
        check.optional_text(view, "submit", "/view", MODAL_TITLE)
        has_input = any(isinstance(b, Mapping) and b.get("type") == "input" for b in view.get("blocks") or [])
        if has_input and "submit" not in view:  # [T] "`submit` is required when an input block is within"
            check.error("/view/submit", "must provide `submit` when the view has input blocks")
    for key, limit in (("private_metadata", PRIVATE_METADATA), ("callback_id", ID), ("external_id", ID)):
        if key in view:
            check.string(view[key], f"/view/{key}", limit)
    if check.errors:
        return Verdict(Refusal("invalid_arguments", tuple(check.errors)), check.findings)
    return Verdict(findings=check.findings)


def offending(payload: Mapping[str, Any], messages: tuple[str, ...], limit: int = 300) -> list[str]:
    """The blocks the `messages` point at (or the largest ones, for a size refusal), as short JSON excerpts."""
    blocks = payload.get("blocks")
    if isinstance(payload.get("view"), Mapping):
        blocks = payload["view"].get("blocks")
    if not isinstance(blocks, list):
        return []
    indexes = sorted({int(m) for m in re.findall(r"(?:/view)?/blocks/(\d+)", " ".join(messages))})
    if not messages:  # a size refusal: the biggest blocks are the ones to cut
        indexes = sorted(range(len(blocks)), key=lambda i: -blocks_text(blocks[i]))[:3]
    out = []
    for i in indexes[:3]:
        if i < len(blocks):
            shown = json.dumps(blocks[i], ensure_ascii=False)
            cut = f"{shown[:limit]}…" if len(shown) > limit else shown
            out.append(f"block {i} ({blocks_text(blocks[i]):,} chars of text): {cut}")
    return out

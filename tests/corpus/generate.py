#!/usr/bin/env python3
"""Writes tests/corpus/hostile.jsonl: SQS bodies that doclink must reject.

Every line is one case:

    {"id": ..., "category": ..., "body": ... | "body_b64": ..., "expect_field": ..., "sqs": ...}

Run `python3 tests/corpus/generate.py`. The output is deterministic (fixed seed, no
clock). Before writing, every case is checked:

- a body marked `sqs: true` holds only characters SQS accepts and is at most
  262,144 bytes of UTF-8; a `sqs: false` case really could not travel through SQS;
- a reference reader (below, written from the event rules, lenient wherever the
  rules leave room) rejects every body, and names `expect_field` when that is set;
- the same reader accepts a list of tricky but valid events, so that it is not
  simply rejecting everything.

It prints the count per category and exits 1 when a check fails or when there are
fewer than 300 cases. Standard library only.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import random
import re
import sys
import unicodedata
import uuid
from collections import Counter
from pathlib import Path

SEED = 20260301
MAX_BODY = 262_144  # SQS message size limit, bytes of UTF-8
MAX_DEPTH = 128  # serde_json's default recursion limit; the corpus nests far deeper
MIN_CASES = 300
VALID_OUT = Path(__file__).resolve().parent / "valid.jsonl"
OUT = Path(__file__).resolve().parent / "hostile.jsonl"

rng = random.Random(SEED)

BASE = {
    "event_id": "c0a8-2026-000123",
    "document_key": "decisions/2026/ABC-123/Décision finale.pdf",
    "recipient": {"email": "jane@example.org", "name": "Jane O'Neil"},
    "template": "decision_letter",
    "locale": "fr",
    "expires_in": "7d",
    "data": {"case_number": "ABC-123"},
}

DEL = object()  # marks a member to remove
# Wherever the documented event_id survives into a body, Corpus.add replaces it with
# one unique to the case, so that no case can be mistaken for a redelivery of another.
MARK = BASE["event_id"]


def uid() -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def ev(changes: dict | None = None, event_id: str | None = None) -> dict:
    """The documented event with `changes` applied: {"a.b": value} or {("a", "b"): value}."""
    event = copy.deepcopy(BASE)
    if event_id is not None:
        event["event_id"] = event_id
    for path, value in (changes or {}).items():
        parts = path if isinstance(path, tuple) else tuple(path.split("."))
        target = event
        for part in parts[:-1]:
            target = target[part]
        if value is DEL:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return event


def js(value, ascii: bool = False, **kw) -> str:
    return json.dumps(value, ensure_ascii=ascii, **kw)


def sns(message, /, **extra) -> dict:
    """An SNS notification as SQS receives it with raw message delivery off."""
    note = {
        "Type": "Notification",
        "MessageId": uid(),
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:doclink-events",
        "Message": message,
        "Timestamp": "2026-03-01T12:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:eu-west-1:123456789012:doclink-events:"
        + uid(),
    }
    for key, value in extra.items():
        if value is DEL:
            note.pop(key, None)
        else:
            note[key] = value
    return note


def eb(detail, /, **extra) -> dict:
    """An EventBridge event as an SQS target receives it."""
    event = {
        "version": "0",
        "id": uid(),
        "detail-type": "DocumentReady",
        "source": "com.example.documents",
        "account": "123456789012",
        "time": "2026-03-01T12:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": detail,
    }
    for key, value in extra.items():
        if value is DEL:
            event.pop(key, None)
        else:
            event[key] = value
    return event


# ---------------------------------------------------------------------------
# SQS character and size rules
# ---------------------------------------------------------------------------


def sqs_legal_char(c: str) -> bool:
    o = ord(c)
    return (
        o in (0x9, 0xA, 0xD)
        or 0x20 <= o <= 0xD7FF
        or 0xE000 <= o <= 0xFFFD
        or 0x10000 <= o <= 0x10FFFF
    )


def sqs_problem(raw: bytes) -> str | None:
    """Why these bytes cannot be an SQS message body, or None when they can."""
    if len(raw) > MAX_BODY:
        return f"{len(raw)} bytes, over {MAX_BODY}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 ({e.reason} at byte {e.start})"
    for i, c in enumerate(text):
        if not sqs_legal_char(c):
            return f"character U+{ord(c):04X} at {i} is not allowed in SQS"
    return None


# ---------------------------------------------------------------------------
# Reference reader: the event rules, lenient wherever they leave room
# ---------------------------------------------------------------------------


class Rejected(Exception):
    def __init__(self, field: str, why: str):
        super().__init__(f"{field}: {why}")
        self.field = field


class Duplicate(ValueError):
    pass


def _pairs(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise Duplicate(f"duplicate key {key!r}")
        seen.add(key)
    return dict(pairs)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _float(text):
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _int(text):
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return int(text) if len(text) < 4000 else value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs,
    parse_constant=_no_constant,
    parse_float=_float,
    parse_int=_int,
    strict=True,
)


def parse_json(text: str):
    """Strict JSON: no duplicate keys, NaN, infinities, lone surrogates or deep nesting."""
    value = _DECODER.decode(text)
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise ValueError("nested too deep")
            for key, member in item.items():
                stack.append((key, depth))
                stack.append((member, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise ValueError("nested too deep")
            stack.extend((member, depth + 1) for member in item)
        elif isinstance(item, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                raise ValueError("lone surrogate")
    return value


def is_cc(c: str) -> bool:
    return unicodedata.category(c) == "Cc"


BIDI = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}
LOCAL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~.")
LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?", re.ASCII)
LOCALE = re.compile(r"(?:en|fr)(?:[-_][A-Za-z0-9]{1,8})*", re.ASCII | re.IGNORECASE)
DURATION = re.compile(r"(?:[0-9]+[smhdw])+", re.ASCII)
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_TTL = 30 * 86400  # DOCLINK_LINK_MAX_TTL default


def is_sns(o) -> bool:
    return isinstance(o, dict) and o.get("Type") == "Notification" and "Message" in o


def is_eb(o) -> bool:
    return isinstance(o, dict) and "detail-type" in o and "detail" in o


def email_ok(text: str) -> bool:
    if not text.isascii() or len(text) > 254 or text.count("@") != 1:
        return False
    local, domain = text.split("@")
    if not 1 <= len(local) <= 64 or not set(local) <= LOCAL_CHARS:
        return False
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    labels = domain.split(".")
    if len(labels) < 2 or not all(LABEL.fullmatch(label) for label in labels):
        return False
    return not labels[-1].isdigit()


def duration_seconds(text: str) -> int | None:
    text = text.strip(" ")
    if not DURATION.fullmatch(text):
        return None
    total = 0
    for digits, unit in re.findall(r"([0-9]+)([smhdw])", text):
        digits = digits.lstrip("0") or "0"
        if len(digits) > 12:  # far beyond 30 days in any unit
            return MAX_TTL + 1
        total += int(digits) * UNIT[unit]
    return total


def _string(obj: dict, key: str, field: str, required: bool):
    value = obj.get(key)
    if value is None:
        if required:
            raise Rejected(field, "is required")
        return None
    if not isinstance(value, str):
        raise Rejected(field, f"must be a string, found {type(value).__name__}")
    return value


def check_event(event: dict) -> None:
    event_id = _string(event, "event_id", "event_id", True)
    if not 1 <= len(event_id) <= 256 or any(map(is_cc, event_id)):
        raise Rejected("event_id", "1-256 characters, no control characters")

    key = _string(event, "document_key", "document_key", True)
    if not 1 <= len(key.encode()) <= 1024:
        raise Rejected("document_key", "1-1024 bytes")
    if key.startswith("/") or any(map(is_cc, key)):
        raise Rejected("document_key", "leading / or control character")
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        raise Rejected("document_key", "empty, . or .. segment")

    recipient = event.get("recipient")
    if not isinstance(recipient, dict):
        raise Rejected("recipient", "must be an object")
    email = _string(recipient, "email", "recipient.email", True)
    if not email_ok(email):
        raise Rejected("recipient.email", "not an ASCII local@domain address")
    name = _string(recipient, "name", "recipient.name", False)
    if name is not None:
        if len(name) > 256:
            raise Rejected("recipient.name", "over 256 characters")
        if any(is_cc(c) or c in BIDI or c in ZERO_WIDTH for c in name):
            raise Rejected("recipient.name", "control, bidi or zero-width character")

    template = _string(event, "template", "template", True)
    if template not in ("decision_letter", "correspondence"):
        raise Rejected("template", "unknown template")

    locale = _string(event, "locale", "locale", False)
    if locale is not None and not LOCALE.fullmatch(locale):
        raise Rejected("locale", "no templates for this locale")

    expires_in = _string(event, "expires_in", "expires_in", False)
    if expires_in is not None:
        seconds = duration_seconds(expires_in)
        if seconds is None or not 0 < seconds <= MAX_TTL:
            raise Rejected("expires_in", "not a duration of more than 0 and at most 30d")

    data = event.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise Rejected("data", "must be an object")
        if len(data) > 64:
            raise Rejected("data", "more than 64 entries")
        for k, v in data.items():
            field = f"data.{k}"
            if not (1 <= len(k) <= 64 and all(c.isascii() and (c.isalnum() or c == "_") for c in k)):
                raise Rejected("data", "keys are 1 to 64 ASCII letters, digits or '_'")
            if not isinstance(v, str):
                raise Rejected(field, "must be a string")
            if len(v) > 2000:
                raise Rejected(field, "over 2000 characters")
            if k in ("case_number", "subject") and any(map(is_cc, v)):
                raise Rejected(field, "control character")
            if k == "message" and any(is_cc(c) and c not in "\n\r" for c in v):
                raise Rejected(field, "control character other than a newline")


def reference_reject(raw: bytes) -> Rejected | None:
    """The rejection the event rules call for, or None when the body is a valid event."""
    try:
        if len(raw) > MAX_BODY:
            raise Rejected("body", "too large")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("body", "not UTF-8")
        try:
            top = parse_json(text)
        except (ValueError, RecursionError) as e:
            raise Rejected("body", f"not JSON ({e})")
        if not isinstance(top, dict):
            raise Rejected("body", "not an object")

        def unwrap_eb(o):
            detail = o["detail"]
            if not isinstance(detail, dict):
                raise Rejected("detail", "must be an object")
            if is_sns(detail) or is_eb(detail):
                raise Rejected("detail", "an envelope inside EventBridge detail")
            return detail

        event = top
        if is_sns(top):
            message = top["Message"]
            if not isinstance(message, str):
                raise Rejected("Message", "must be a string")
            try:
                inner = parse_json(message)
            except (ValueError, RecursionError) as e:
                raise Rejected("Message", f"not JSON ({e})")
            if not isinstance(inner, dict):
                raise Rejected("Message", "not an object")
            if is_sns(inner):
                raise Rejected("Message", "SNS inside SNS")
            event = unwrap_eb(inner) if is_eb(inner) else inner
        elif is_eb(top):
            event = unwrap_eb(top)
        check_event(event)
    except Rejected as r:
        return r
    return None


# ---------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
UNSET = object()


class Corpus:
    def __init__(self):
        self.cases: list[dict] = []
        self.ids: set[str] = set()
        self.category = ""

    def add(self, name: str, body, expect=UNSET, sqs: bool = True) -> None:
        """body: str (an SQS body) or bytes (raw; always sqs false). expect: field or None."""
        if expect is UNSET:
            raise ValueError(f"{name}: say which field is expected (or None)")
        case_id = f"{self.category}-{name}"
        if not SLUG.fullmatch(case_id):
            raise ValueError(f"{case_id!r} is not a slug")
        if case_id in self.ids:
            raise ValueError(f"duplicate id {case_id}")
        self.ids.add(case_id)
        unique = f"hostile-{case_id}"[:200]
        if isinstance(body, bytes):
            body = body.replace(MARK.encode(), unique.encode())
        else:
            body = body.replace(MARK, unique)
        case = {"id": case_id, "category": self.category}
        if isinstance(body, bytes):
            sqs = False
            case["body_b64"] = base64.b64encode(body).decode("ascii")
        elif sqs:
            case["body"] = body
        else:
            case["body_b64"] = base64.b64encode(body.encode("utf-8", "surrogatepass")).decode("ascii")
        case["expect_field"] = expect
        case["sqs"] = sqs
        self.cases.append(case)

    def event(self, name: str, changes: dict, expect, ascii: bool = False, **kw) -> None:
        """A bare event (as SQS holds it with SNS raw delivery on) with `changes`."""
        self.add(name, js(ev(changes, self.eid(name)), ascii=ascii, **kw), expect)

    def eid(self, name: str) -> str:
        return f"hostile-{self.category}-{name}"[:200]


def raw_of(case: dict) -> bytes:
    if "body" in case:
        return case["body"].encode("utf-8")
    return base64.b64decode(case["body_b64"])


def build() -> Corpus:
    c = Corpus()
    good = js(BASE)

    # ------------------------------------------------------------------ broken JSON
    c.category = "broken-json"
    for name, body in [
        ("empty", ""),
        ("space", " "),
        ("newline", "\n"),
        ("whitespace-mix", " \t\r\n "),
        ("whitespace-4k", " \n" * 2048),
        ("null", "null"),
        ("true", "true"),
        ("false", "false"),
        ("zero", "0"),
        ("negative-number", "-1"),
        ("float", "3.14"),
        ("string", '"decision_letter"'),
        ("empty-string", '""'),
        ("empty-array", "[]"),
        ("array-of-event", "[" + good + "]"),
        ("array-of-two-events", "[" + good + ", " + good + "]"),
        ("array-of-numbers", "[1, 2, 3]"),
        ("event-as-json-string", js(good)),
        ("open-brace", "{"),
        ("close-brace", "}"),
        ("mismatched-brackets", "{]"),
        ("key-without-value", '{"event_id"}'),
        ("missing-colon", '{"event_id" "x"}'),
        ("double-colon", '{"event_id":: "x"}'),
        ("missing-comma", '{"event_id": "x" "template": "decision_letter"}'),
        ("leading-comma", '{, "event_id": "x"}'),
        ("unterminated-string", '{"event_id": "c0a8-2026-000123'),
        ("truncated-1", good[:1]),
        ("truncated-10", good[:10]),
        ("truncated-half", good[: len(good) // 2]),
        ("truncated-last-brace", good[:-1]),
        ("truncated-after-colon", good[: good.index(":") + 1]),
        ("truncated-in-escape", js(BASE, ascii=True)[: js(BASE, ascii=True).index("\\u00e9") + 4]),
        ("trailing-letter", good + "x"),
        ("trailing-brace", good + "}"),
        ("trailing-comma", good + ","),
        ("trailing-null", good + " null"),
        ("two-objects", good + good),
        ("two-objects-ndjson", good + "\n" + good + "\n"),
        ("trailing-slashes", good + "//"),
        ("line-comment-before", "// document ready\n" + good),
        ("hash-comment-before", "# document ready\n" + good),
        ("block-comment-inside", good.replace('"template"', '/* which letter */ "template"', 1)),
        ("block-comment-after", good + " /* end */"),
        ("single-quoted-document", str(ev(None))),
        ("single-quoted-value", good.replace('"decision_letter"', "'decision_letter'", 1)),
        ("unquoted-keys", good.replace('"event_id"', "event_id", 1)),
        ("trailing-comma-in-object", good[:-1] + ",}"),
        ("trailing-comma-in-recipient", good.replace('"Jane O\'Neil"}', '"Jane O\'Neil",}', 1)),
        ("nan-expires", good.replace('"7d"', "NaN", 1)),
        ("infinity-unknown-field", good[:-1] + ', "score": Infinity}'),
        ("minus-infinity-unknown-field", good[:-1] + ', "score": -Infinity}'),
        ("lowercase-nan", good[:-1] + ', "score": nan}'),
        ("python-literals", good[:-1] + ', "urgent": True, "cc": None}'),
        ("hex-number", good[:-1] + ', "attempt": 0x10}'),
        ("leading-zero-number", good[:-1] + ', "attempt": 007}'),
        ("plus-sign-number", good[:-1] + ', "attempt": +1}'),
        ("bare-fraction", good[:-1] + ', "attempt": .5}'),
        ("dangling-point", good[:-1] + ', "attempt": 1.}'),
        ("bad-escape-x", good.replace("Jane O'Neil", "Jane \\x41", 1)),
        ("bad-escape-quote", good.replace("Jane O'Neil", "Jane O\\'Neil", 1)),
        ("bad-escape-u-short", good.replace("Jane O'Neil", "Jane \\u12", 1)),
        ("bad-escape-u-nonhex", good.replace("Jane O'Neil", "Jane \\u12G4", 1)),
        ("bad-escape-big-u", good.replace("Jane O'Neil", "Jane \\U0001F600", 1)),
        ("raw-tab-in-name", good.replace("Jane O'Neil", "Jane\tO'Neil", 1)),
        ("raw-lf-in-name", good.replace("Jane O'Neil", "Jane\nBcc: x@evil.example", 1)),
        ("raw-crlf-in-name", good.replace("Jane O'Neil", "Jane\r\nBcc: x@evil.example", 1)),
        ("raw-lf-in-document-key", good.replace("Décision finale", "Décision\nfinale", 1)),
        ("raw-cr-in-event-id", good.replace("c0a8-2026-000123", "c0a8\r2026", 1)),
        ("bom", "\ufeff" + good),
        ("bom-inside", "{\ufeff" + good[1:]),
        ("nbsp-before", "\u00a0" + good),
        ("line-separator-before", "\u2028" + good),
        ("ideographic-space-before", "\u3000" + good),
        ("escaped-brace", "\\u007b" + good[1:]),
        ("yaml", "event_id: c0a8-2026-000123\ntemplate: decision_letter\n"),
        ("xml", "<event><event_id>c0a8-2026-000123</event_id></event>"),
        ("form-encoded", "event_id=c0a8-2026-000123&template=decision_letter"),
        ("json5-style", "{event_id: 'c0a8-2026-000123', template: 'decision_letter',}"),
    ]:
        c.add(name, body, "body")

    # SQS-illegal characters that break the JSON (these bodies cannot be sent)
    for name, body in [
        ("raw-nul-between-tokens", good[:1] + "\x00" + good[1:]),
        ("raw-nul-in-string", good.replace("Jane O'Neil", "Jane\x00O'Neil", 1)),
        ("raw-soh-in-string", good.replace("Jane O'Neil", "Jane\x01", 1)),
        ("form-feed-before", "\x0c" + good),
        ("vertical-tab-before", "\x0b" + good),
        ("raw-unit-separator-in-key", good.replace("Décision finale", "Décision\x1ffinale", 1)),
        ("fffe-before", "\ufffe" + good),
        ("trailing-raw-nul", good + "\x00"),
    ]:
        c.add(name, body, "body", sqs=False)
    c.add("utf16le-with-bom", "\ufeff".encode("utf-16-le") + good.encode("utf-16-le"), "body")
    c.add("utf16be", good.encode("utf-16-be"), "body")
    c.add("utf32", good.encode("utf-32"), "body")
    c.add("random-binary", rng.randbytes(512), "body")
    c.add("gzip-magic", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + rng.randbytes(64), "body")

    # ------------------------------------------------------------------ deep nesting
    c.category = "deep-nesting"
    for n in (200, 1000, 10_000, 100_000):
        c.add(f"arrays-{n}", "[" * n + "]" * n, "body")
    for n in (200, 1000, 10_000, 40_000):
        c.add(f"objects-{n}", '{"a":' * n + "1" + "}" * n, "body")
    c.add("unclosed-arrays-100000", "[" * 100_000, "body")
    c.add("unclosed-objects-20000", '{"a":' * 20_000, "body")
    c.add("mixed-200", '[{"a":' * 100 + "1" + "}]" * 100, "body")
    for n in (200, 1000, 10_000):
        nested = "[" * n + "]" * n
        c.add(f"unknown-field-arrays-{n}", good[:-1] + ', "extra": ' + nested + "}", "body")
        nested = '{"a":' * n + "null" + "}" * n
        c.add(f"unknown-field-objects-{n}", good[:-1] + ', "extra": ' + nested + "}", "body")
    # inside a typed field: the parser (body) or the field's type check could speak
    c.add("in-case-number", good.replace('"ABC-123"}', "[" * 1000 + "]" * 1000 + "}", 1), None)
    c.add("in-recipient", js(ev({"recipient": DEL}, c.eid("in-recipient")))[:-1]
          + ', "recipient": ' + '{"email":' * 500 + '"a@b.co"' + "}" * 500 + "}", None)
    c.add("in-sns-message", js(sns("[" * 1000 + "]" * 1000)), "Message")
    c.add("event-in-sns-message-with-deep-unknown", js(sns(
        js(ev(None, c.eid("event-in-sns-message-with-deep-unknown")))[:-1]
        + ', "extra": ' + "[" * 1000 + "]" * 1000 + "}")), None)
    c.add("in-eventbridge-detail", js(eb({}))[:-3] + '{"a":' * 1000 + "1" + "}" * 1000 + "}", None)

    # ------------------------------------------------------------------ duplicate keys
    # A duplicate at the top level may be named by its key instead of `body`; deeper
    # ones may be named by the parser (`body`), the object or the member: all null.
    c.category = "duplicate-keys"

    def dup(name, key, first, second, where=None):
        event = ev(None, c.eid(name))
        target = event if where is None else event[where]
        target.pop(key, None)
        inner = js(target)[:-1]
        sep = ", " if len(target) else ""
        text = inner + sep + js(key) + ": " + js(first) + ", " + js(key) + ": " + js(second) + "}"
        if where is None:
            return text
        event[where] = "\x00PLACEHOLDER\x00"
        return js(event).replace(js("\x00PLACEHOLDER\x00"), text)

    c.add("event-id", dup("event-id", "event_id", "evt-1", "evt-2"), None)
    c.add("event-id-same-value", dup("event-id-same-value", "event_id", "evt-1", "evt-1"), None)
    c.add("document-key", dup("document-key", "document_key", "decisions/a.pdf", "../../etc/passwd"), None)
    c.add("recipient", dup("recipient", "recipient", {"email": "jane@example.org"},
                           {"email": "attacker@evil.example"}), None)
    c.add("template", dup("template", "template", "decision_letter", "correspondence"), None)
    c.add("locale", dup("locale", "locale", "fr", "en"), None)
    c.add("expires-in", dup("expires-in", "expires_in", "7d", "30d"), None)
    c.add("data", dup("data", "data", {"case_number": "A"}, {"case_number": "B"}), None)
    c.add("unknown-field", dup("unknown-field", "producer", "a", "b"), None)
    c.add("recipient-email", dup("recipient-email", "email", "jane@example.org",
                                 "attacker@evil.example", "recipient"), None)
    c.add("recipient-name", dup("recipient-name", "name", "Jane", "Eve", "recipient"), None)
    c.add("data-case-number", dup("data-case-number", "case_number", "ABC-123", "XYZ-999", "data"), None)
    c.add("data-subject", dup("data-subject", "subject", "Decision", "Urgent: pay now", "data"), None)
    c.add("escaped-event-id", good[:-1] + ', "event\\u005fid": "evt-2"}', None)
    c.add("escaped-recipient", good[:-1] + ', "r\\u0065cipient": {"email": "attacker@evil.example"}}', None)
    c.add("escaped-email", good.replace('"name"', '"\\u0065mail": "attacker@evil.example", "name"', 1), None)
    c.add("in-unknown-object", good[:-1] + ', "meta": {"k": 1, "k": 2}}', None)
    many = "".join(f', "pad": {i}' for i in range(5000))
    c.add("same-key-5000-times", good[:-1] + many + "}", None)
    note = sns(js(ev(None, c.eid("sns-message"))))
    text = js(note)
    c.add("sns-message", text[:-1] + ', "Message": ' + js(js(ev({"recipient.email": "attacker@evil.example"}))) + "}", None)
    c.add("sns-type", js(sns(good))[:-1] + ', "Type": "SubscriptionConfirmation"}', None)
    inner = js(ev(None, c.eid("inside-sns-message")))
    inner = inner.replace('"name"', '"email": "attacker@evil.example", "name"', 1)
    c.add("inside-sns-message", js(sns(inner)), None)
    c.add("eventbridge-detail", js(eb(ev(None, c.eid("eventbridge-detail"))))[:-1]
          + ', "detail": ' + js(ev({"recipient.email": "attacker@evil.example"})) + "}", None)
    c.add("eventbridge-detail-type", js(eb(ev(None, c.eid("eventbridge-detail-type"))))[:-1]
          + ', "detail-type": "Other"}', None)
    c.add("inside-eventbridge-detail", js(eb(ev(None, c.eid("inside-eventbridge-detail")))).replace(
        '"event_id"', '"event_id": "evt-0", "event_id"', 1), None)

    # ------------------------------------------------------------------ wrong types
    c.category = "wrong-types"
    values = {
        "number": 7,
        "float": 1.5,
        "true": True,
        "false": False,
        "null": None,
        "empty-array": [],
        "array": ["x"],
        "empty-object": {},
        "object": {"value": "x"},
    }
    for field in ("event_id", "document_key", "template"):
        for label, value in values.items():
            c.event(f"{field.replace('_', '-')}-{label}", {field: value}, field)
    for label, value in {
        "string": "jane@example.org",
        "number": 1,
        "true": True,
        "null": None,
        "empty-array": [],
        "array-of-recipient": [{"email": "jane@example.org"}],
    }.items():
        c.event(f"recipient-{label}", {"recipient": value}, "recipient")
    for label, value in {
        "number": 1,
        "true": True,
        "null": None,
        "empty-array": [],
        "array": ["jane@example.org"],
        "two-addresses": ["jane@example.org", "attacker@evil.example"],
        "object": {"address": "jane@example.org"},
    }.items():
        c.event(f"email-{label}", {"recipient.email": value}, "recipient.email")
    for label, value in {
        "number": 1,
        "true": True,
        "array": ["Jane"],
        "object": {"first": "Jane", "last": "O'Neil"},
    }.items():
        c.event(f"name-{label}", {"recipient.name": value}, "recipient.name")
    for label, value in {"number": 1, "true": True, "array": ["fr"], "object": {"lang": "fr"}}.items():
        c.event(f"locale-{label}", {"locale": value}, "locale")
    for label, value in {
        "number-7": 7,
        "number-seconds": 604800,
        "float": 7.5,
        "true": True,
        "array": ["7d"],
        "object": {"days": 7},
    }.items():
        c.event(f"expires-in-{label}", {"expires_in": value}, "expires_in")
    for label, value in {
        "string": "case ABC-123",
        "number": 1,
        "true": True,
        "empty-array": [],
        "array-of-object": [{"case_number": "ABC-123"}],
    }.items():
        c.event(f"data-{label}", {"data": value}, "data")
    for key in ("case_number", "subject", "message", "reference"):
        for label, value in {
            "number": 123,
            "true": True,
            "null": None,
            "array": ["ABC-123"],
            "object": {"v": "ABC-123"},
        }.items():
            c.event(f"data-{key.replace('_', '-')}-{label}", {("data", key): value}, f"data.{key}")
    c.event("data-proto", {"data": {"__proto__": {"isAdmin": True}}}, "data.__proto__")
    c.event("data-constructor", {"data": {"constructor": 5}}, "data.constructor")

    # ------------------------------------------------------------------ missing fields
    c.category = "missing-fields"
    c.add("empty-object", "{}", "event_id")
    for field in ("event_id", "document_key", "recipient", "template"):
        c.event(field.replace("_", "-"), {field: DEL}, field)
    c.event("recipient-email", {"recipient.email": DEL}, "recipient.email")
    c.event("recipient-empty-object", {"recipient": {}}, "recipient.email")
    c.event("recipient-name-only", {"recipient": {"name": "Jane"}}, "recipient.email")
    for name, (old, new, field) in {
        "event-id-capitalised": ("event_id", "Event_ID", "event_id"),
        "event-id-camel-case": ("event_id", "eventId", "event_id"),
        "event-id-zero-width-in-key": ("event_id", "event\u200b_id", "event_id"),
        "document-key-hyphen": ("document_key", "document-key", "document_key"),
        "template-trailing-space-in-key": ("template", "template ", "template"),
        "template-cyrillic-a-in-key": ("template", "templ\u0430te", "template"),
        "recipient-plural": ("recipient", "recipients", "recipient"),
    }.items():
        event = ev(None, c.eid(name))
        event = {(new if k == old else k): v for k, v in event.items()}
        c.add(name, js(event), field)
    event = ev(None, c.eid("email-capitalised"))
    event["recipient"] = {"Email": "jane@example.org", "name": "Jane"}
    c.add("email-capitalised", js(event), "recipient.email")

    # ------------------------------------------------------------------ huge numbers
    c.category = "huge-numbers"
    # Where JSON numbers overflow a double, serde_json fails the parse (`body`) while
    # a type check would name the field: null. Finite ones are a plain type error.
    for field, expect_finite in (
        ("event_id", "event_id"),
        ("document_key", "document_key"),
        ("template", "template"),
        ("expires_in", "expires_in"),
        ("locale", "locale"),
        ("recipient", "recipient"),
        ("data", "data"),
    ):
        slug = field.replace("_", "-")
        base = js(ev({field: "\x00N\x00"}))
        for label, literal, expect in (
            ("1e400", "1e400", None),
            ("minus-1e400", "-1e400", None),
            ("400-digits", "9" * 400, None),
            ("2-pow-70", str(2**70), expect_finite),
            ("1e300", "1e300", expect_finite),
        ):
            c.add(f"{slug}-{label}", base.replace(js("\x00N\x00"), literal), expect)
    for key, field in (("recipient", "recipient.email"), ("data", "data.case_number")):
        inner_key = "email" if key == "recipient" else "case_number"
        base = js(ev({(key, inner_key): "\x00N\x00"}))
        slug = field.replace(".", "-").replace("_", "-")
        c.add(f"{slug}-1e400", base.replace(js("\x00N\x00"), "1e400"), None)
        c.add(f"{slug}-2-pow-70", base.replace(js("\x00N\x00"), str(2**70)), field)
        c.add(f"{slug}-5000-digits", base.replace(js("\x00N\x00"), "1" + "0" * 4999), None)
    c.event("event-id-underflow", {"event_id": 0}, "event_id")
    c.add("event-id-tiny-exponent", js(ev({"event_id": "\x00N\x00"})).replace(js("\x00N\x00"), "1e-400"), "event_id")
    c.add("event-id-negative-zero", js(ev({"event_id": "\x00N\x00"})).replace(js("\x00N\x00"), "-0"), "event_id")
    c.event("expires-in-digits-string", {"expires_in": "99999999999999999999d"}, "expires_in")
    c.event("expires-in-2-pow-64-days", {"expires_in": "18446744073709551616d"}, "expires_in")
    c.event("expires-in-u64-overflow", {"expires_in": "18446744073709551616s"}, "expires_in")
    c.event("expires-in-5000-digit-string", {"expires_in": "1" + "0" * 5000 + "s"}, "expires_in")
    c.event("event-id-300-digit-string", {"event_id": "9" * 300}, "event_id")

    # ------------------------------------------------------------------ size limits
    c.category = "size-limits"

    def fill(name, changes, pad_char, target, expect, lead_ws=False):
        """A body of exactly `target` bytes: the event with an unknown `padding` member."""
        event = ev(changes, c.eid(name))
        event["padding"] = ""
        base = js(event)
        room = target - len(base.encode())
        if lead_ws:
            text = " " * room + base
        else:
            width = len(pad_char.encode())
            event["padding"] = pad_char * (room // width) + "x" * (room % width)
            text = js(event)
        assert len(text.encode()) == target and MARK not in text, name
        c.add(name, text, expect, sqs=target <= MAX_BODY)

    fill("exactly-256k-ascii-no-template", {"template": DEL}, "x", MAX_BODY, "template")
    fill("256k-minus-1-bad-email", {"recipient.email": "jane@"}, "x", MAX_BODY - 1, "recipient.email")
    fill("exactly-256k-3-byte-chars-bad-key", {"document_key": "../x"}, "€", MAX_BODY, "document_key")
    fill("exactly-256k-4-byte-chars-bad-expiry", {"expires_in": "31d"}, "😀", MAX_BODY, "expires_in")
    fill("256k-leading-whitespace-bad-template", {"template": "x"}, "", MAX_BODY, "template", lead_ws=True)
    fill("over-by-1-ascii", None, "x", MAX_BODY + 1, "body")
    fill("over-by-1-bytes-not-chars", None, "é", MAX_BODY + 1, "body")
    c.add("whitespace-256k", " " * MAX_BODY, "body")
    c.event("event-id-10000-chars", {"event_id": "E" * 10_000}, "event_id")
    c.event("event-id-257-chars", {"event_id": "E" * 257}, "event_id")
    c.event("event-id-257-multibyte-chars", {"event_id": "é" * 257}, "event_id")
    c.event("name-100000-chars", {"recipient.name": "J" * 100_000}, "recipient.name")
    c.event("name-257-chars", {"recipient.name": "J" * 257}, "recipient.name")
    c.event("name-257-multibyte-chars", {"recipient.name": "Ð" * 257}, "recipient.name")
    c.event("name-10000-two-byte-chars", {"recipient.name": "é" * 10_000}, "recipient.name")
    c.event("data-5000-entries", {"data": {f"k{i:04d}": "v" for i in range(5000)}}, "data")
    c.event("data-65-entries", {"data": {f"k{i:02d}": "v" for i in range(65)}}, "data")
    c.event("data-1000-entries", {"data": {f"field_{i}": "value" for i in range(1000)}}, "data")
    c.event("data-message-260000-chars", {("data", "message"): "m" * 260_000}, "data.message")
    c.event("data-message-2001-chars", {("data", "message"): "m" * 2001}, "data.message")
    c.event("data-message-2001-multibyte-chars", {("data", "message"): "é" * 2001}, "data.message")
    c.event("data-case-number-2001-chars", {("data", "case_number"): "7" * 2001}, "data.case_number")
    c.event("data-reference-100000-chars", {("data", "reference"): "r" * 100_000}, "data.reference")
    c.event("document-key-1025-ascii", {"document_key": "d" * 1025}, "document_key")
    c.event("document-key-1024-bytes-2-byte-plus-1", {"document_key": "é" * 512 + "a"}, "document_key")
    c.event("document-key-1024-bytes-3-byte-plus-2", {"document_key": "€" * 341 + "ab"}, "document_key")
    c.event("document-key-1024-bytes-4-byte-plus-1", {"document_key": "𝄞" * 256 + "a"}, "document_key")
    c.event("document-key-100000-chars", {"document_key": "k/" * 49_999 + "k.pdf"}, "document_key")
    c.event("email-100000-chars", {"recipient.email": "a" * 99_988 + "@example.org"}, "recipient.email")
    c.event("template-100000-chars", {"template": "decision_letter" * 6667}, "template")
    c.event("locale-100000-chars", {"locale": "fr-" + "x" * 99_997}, "locale")
    event = ev({"template": "ransom_note"}, c.eid("10000-unknown-fields-bad-template"))
    event.update({f"u{i}": i for i in range(10_000)})
    c.add("10000-unknown-fields-bad-template", js(event), "template")

    # ------------------------------------------------------------------ header injection
    c.category = "header-injection"
    bcc = "\r\nBcc: x@evil.example"
    for name, value in {
        "crlf-bcc": "Jane" + bcc,
        "lf-bcc": "Jane\nBcc: x@evil.example",
        "cr-bcc": "Jane\rBcc: x@evil.example",
        "crlf-crlf-body": "Jane\r\n\r\n<html>phishing</html>",
        "encoded-word-crlf": "=?UTF-8?B?SmFuZQ==?=\r\nBcc: x@evil.example",
        "percent-encoded-and-real-crlf": "Jane%0d%0a" + bcc,
        "nel-bcc": "Jane\u0085Bcc: x@evil.example",
        "nul": "Jane\u0000O'Neil",
        "tab": "Jane\tO'Neil",
        "vertical-tab": "Jane\u000bBcc: x@evil.example",
        "form-feed": "Jane\u000c",
        "ansi-escape": "Jane\u001b[31m",
        "del": "Jane\u007f",
        "c1-csi": "Jane\u009b31m",
        "only-tab": "\t",
        "only-crlf": "\r\n",
        "only-nel": "\u0085",
        "spaces-and-tab": "  \t  ",
        "line-separator-and-cr": "Jane\u2028\rBcc: x@evil.example",
    }.items():
        c.event(f"name-{name}", {"recipient.name": value}, "recipient.name")
    c.event("name-nel-escaped", {"recipient.name": "Jane\u0085Bcc: x@evil.example"}, "recipient.name", ascii=True)
    for key in ("case_number", "subject"):
        slug = key.replace("_", "-")
        for name, value in {
            "crlf-bcc": "ABC-123" + bcc,
            "lf": "ABC-123\nX-Injected: 1",
            "cr": "ABC-123\rX-Injected: 1",
            "nul": "ABC-123\u0000",
            "nel": "ABC-123\u0085",
            "tab": "ABC\t123",
            "escape": "ABC-123\u001b]8;;https://evil.example\u0007click\u001b]8;;\u0007",
            "percent-encoded-and-real-lf": "ABC-123%0d%0a\nBcc: x@evil.example",
        }.items():
            c.event(f"{slug}-{name}", {("data", key): value}, f"data.{key}")
    c.event("subject-content-type", {("data", "subject"): "Decision\r\nContent-Type: text/html\r\n\r\n<a href=https://evil.example>"}, "data.subject")
    for name, value in {
        "nul": "First paragraph.\n\nSecond\u0000",
        "tab": "First\tparagraph.",
        "ansi": "\u001b[2J\u001b[HCleared",
        "bell": "Ring\u0007",
        "vertical-tab": "Para\u000bgraph",
        "del": "Para\u007f",
    }.items():
        c.event(f"message-{name}", {("data", "message"): value}, "data.message")
    for name, value in {
        "crlf-bcc": "jane@example.org" + bcc,
        "lf-bcc": "jane@example.org\nBcc: x@evil.example",
        "short-crlf": "a@b.co\r\nBcc:",
        "trailing-crlf": "jane@example.org\r\n",
        "trailing-nul": "jane@example.org\u0000",
        "trailing-tab": "jane@example.org\t",
        "percent-encoded-crlf": "jane@example.org%0d%0aBcc:x@evil.example",
        "comma-second-address": "jane@example.org,attacker@evil.example",
        "semicolon-second-address": "jane@example.org;attacker@evil.example",
        "space-second-address": "jane@example.org attacker@evil.example",
    }.items():
        c.event(f"email-{name}", {"recipient.email": value}, "recipient.email")

    # ------------------------------------------------------------------ email address
    c.category = "email-address"
    for name, value in {
        "quoted-local-with-space": '"a b"@c.co',
        "quoted-local": '"jane"@example.org',
        "trailing-angle": "a@b.co>",
        "angle-brackets": "<a@b.co>",
        "display-name-form": "Jane <jane@example.org>",
        "ip-literal": "a@[127.0.0.1]",
        "ipv6-literal": "a@[IPv6:::1]",
        "unicode-local": "jöhn@example.org",
        "cjk-address": "用户@例子.广告",
        "unicode-domain": "jane@exämple.org",
        "cyrillic-homoglyph-domain": "jane@ex\u0430mple.org",
        "fullwidth-at": "jane\uff20example.org",
        "zero-width-space": "jane@example.org\u200b",
        "empty": "",
        "no-at": "jane.example.org",
        "no-local": "@example.org",
        "no-domain": "jane@",
        "single-label-domain": "jane@localhost",
        "double-at": "jane@@example.org",
        "two-ats": "jane@example@org.example",
        "leading-dot": ".jane@example.org",
        "trailing-dot-local": "jane.@example.org",
        "double-dot-local": "ja..ne@example.org",
        "trailing-dot-domain": "jane@example.org.",
        "leading-dot-domain": "jane@.example.org",
        "double-dot-domain": "jane@example..org",
        "hyphen-leading-label": "jane@-example.org",
        "hyphen-trailing-label": "jane@example-.org",
        "numeric-tld": "jane@example.123",
        "ipv4-as-domain": "jane@127.0.0.1",
        "underscore-domain": "jane@exa_mple.org",
        "comment-local": "jane(comment)@example.org",
        "comment-domain": "jane@example.org(comment)",
        "backslash-local": "ja\\ne@example.org",
        "colon-scheme": "mailto:jane@example.org",
        "space-inside": "ja ne@example.org",
        "local-65-chars": "l" * 65 + "@example.org",
        "total-255-chars": "l" * 64 + "@" + "d" * 62 + "." + "d" * 61 + "." + "d" * 61 + ".org",
        "only-at": "@",
        "html-in-local": "<script>@example.org",
    }.items():
        assert name != "total-255-chars" or len(value) == 255, len(value)
        c.event(name, {"recipient.email": value}, "recipient.email")

    # ------------------------------------------------------------------ name spoofing
    c.category = "name-spoofing"
    for cp in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        c.event(f"bidi-u{cp:04x}", {"recipient.name": f"Jane {chr(cp)}fdp.exe"}, "recipient.name")
    c.event("bidi-rlo-escaped", {"recipient.name": "Invoice \u202egnp.exe"}, "recipient.name", ascii=True)
    c.event("bidi-rlo-spoofed-sender", {"recipient.name": "\u202eSupport <support@bank.example>"}, "recipient.name")
    c.event("bidi-isolate-balanced", {"recipient.name": "\u2067Jane\u2069 O'Neil"}, "recipient.name")
    for cp in (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF):
        c.event(f"zero-width-u{cp:04x}", {"recipient.name": f"Ja{chr(cp)}ne O'Neil"}, "recipient.name")
    c.event("zero-width-only", {"recipient.name": "\u200b\u200b\u200b"}, "recipient.name")
    c.event("zero-width-escaped", {"recipient.name": "Jane\u200d"}, "recipient.name", ascii=True)
    c.event("emoji-zwj-family", {"recipient.name": "Jane \U0001f468\u200d\U0001f469\u200d\U0001f467"}, "recipient.name")
    for name, value in {
        "script-crlf": "<script>alert(1)</script>\r\n",
        "img-onerror-rlo": "<img src=x onerror=alert(1)>\u202e",
        "javascript-link-nul": '<a href="javascript:alert(1)">Jane</a>\u0000',
        "comment-lf": "Jane<!--\n-->",
        "svg-zero-width": '"><svg onload=alert(1)>\u200b',
        "bold-isolate": "<b>Jane</b>\u2066",
        "script-nel": "<script>\u0085</script>",
        "entity-escape": "Jane &lt;\u001b[0m",
        "style-bidi-override": "<style>*{display:none}</style>\u202d",
        "iframe-tab": "<iframe src=//evil.example>\t",
    }.items():
        c.event(f"html-{name}", {"recipient.name": value}, "recipient.name")

    # ------------------------------------------------------------------ document key
    c.category = "document-key"
    for name, value in {
        "parent-prefix": "../etc/passwd",
        "parent-middle": "a/../b",
        "dot-prefix": "./a",
        "dot-middle": "a/./b",
        "dot-dot": "..",
        "dot": ".",
        "parent-suffix": "a/..",
        "dot-suffix": "a/.",
        "deep-traversal": "../../../../../../etc/shadow",
        "traversal-after-prefix": "decisions/2026/../../secrets/keys.pem",
        "double-slash": "a//b",
        "leading-slash": "/etc/passwd",
        "only-slash": "/",
        "two-slashes": "//",
        "protocol-relative": "//evil.example/x.pdf",
        "trailing-slash": "a/",
        "trailing-slash-deep": "decisions/2026/",
        "empty": "",
        "percent-dot-and-real-traversal": "%2e%2e/../x.pdf",
        "percent-nul-and-real-nul": "a/%00\u0000.pdf",
        "nul-suffix": "report.pdf\u0000.html",
        "nul-only": "\u0000",
        "bell": "a\u0007.pdf",
        "escape": "a\u001b[31m.pdf",
        "del": "a\u007f.pdf",
        "nel": "a\u0085b.pdf",
        "c1-apc": "a\u009f.pdf",
        "tab": "a\tb.pdf",
        "lf": "a\nb.pdf",
        "cr": "a\rb.pdf",
        "crlf-header": "a.pdf\r\nX-Amz-Meta: 1",
        "nul-then-traversal": "a/b\u0000/../c",
        "line-separator-with-traversal": "a\u2028/../b",
        "backslash-and-real-traversal": "..\\..\\/../etc",
        "dot-segment-with-space-neighbour": "a/ /./b",
        "unicode-dots-and-real-dots": "\u2024\u2024/../x",
    }.items():
        c.event(name, {"document_key": value}, "document_key")
    c.event("nul-escaped-form", {"document_key": "decisions/\u0000/x.pdf"}, "document_key", ascii=True)

    # ------------------------------------------------------------------ encoding
    c.category = "encoding"
    # lone surrogates as JSON escapes: serde_json refuses the whole body
    for name, field_path, escape in [
        ("lone-high-in-name", "recipient.name", "\\ud800"),
        ("lone-low-in-event-id", "event_id", "\\udfff"),
        ("lone-high-in-document-key", "document_key", "a\\ud800b"),
        ("lone-high-in-case-number", ("data", "case_number"), "\\udbff"),
        ("high-then-letter", "recipient.name", "\\ud800\\u0041"),
        ("reversed-pair", "recipient.name", "\\udc00\\ud800"),
        ("high-then-raw-char", "recipient.name", "\\ud800x"),
        ("lone-high-in-template", "template", "decision_letter\\ud800"),
        ("lone-high-in-unknown-field", "producer", "\\ud83d"),
    ]:
        event = ev({field_path: "\x00S\x00"}, c.eid(name))
        c.add(name, js(event).replace(js("\x00S\x00"), '"' + escape + '"'), "body")
    c.add("lone-surrogate-in-key", good[:-1] + ', "\\ud800": 1}', "body")
    inner = js(ev(None, c.eid("lone-surrogate-inside-sns-message"))).replace("Jane O'Neil", "Jane \\ud800")
    c.add("lone-surrogate-inside-sns-message", js(sns(inner)), "Message")
    c.add("lone-surrogate-in-sns-message-string", js(sns("x"))
          .replace('"Message": "x"', '"Message": "\\ud800"'), "body")

    # invalid UTF-8 (cannot be sent through SQS)
    good_bytes = good.encode()

    def splice(old: str, new: bytes) -> bytes:
        return good_bytes.replace(old.encode(), new, 1)

    for name, body in [
        ("byte-ff-in-name", splice("Jane O'Neil", b"Jane \xff")),
        ("byte-fe-in-name", splice("Jane O'Neil", b"Jane \xfe")),
        ("c3-28", splice("Jane O'Neil", b"Jane \xc3\x28")),
        ("lone-continuation", splice("Jane O'Neil", b"Jane \x80")),
        ("truncated-3-byte-at-end", good_bytes + b"\xe2\x82"),
        ("truncated-multibyte-mid-body", good_bytes[: good_bytes.index("é".encode()) + 1]),
        ("cesu-surrogate", splice("Jane O'Neil", b"Jane \xed\xa0\x80")),
        ("cesu-pair", splice("Jane O'Neil", b"Jane \xed\xa0\xbd\xed\xb8\x80")),
        ("above-10ffff", splice("Jane O'Neil", b"Jane \xf4\x90\x80\x80")),
        ("five-byte-form", splice("Jane O'Neil", b"Jane \xf8\x88\x80\x80\x80")),
        ("overlong-nul", splice("Jane O'Neil", b"Jane \xc0\x80")),
        ("overlong-slash-in-key", splice("decisions/2026", b"decisions\xc0\xaf2026")),
        ("overlong-dots-in-key", splice("decisions/2026", b"\xc0\xae\xc0\xae/\xc0\xae\xc0\xae/etc/passwd")),
        ("overlong-dot-3-byte", splice("decisions/2026", b"\xe0\x80\xae\xe0\x80\xae/etc")),
        ("overlong-dot-4-byte", splice("decisions/2026", b"\xf0\x80\x80\xae\xf0\x80\x80\xae/etc")),
        ("overlong-quote", splice("Jane O'Neil", b"Jane \xc0\xa2, \"email\": \"x@evil.example")),
        ("latin1-body", good.encode("latin-1")),
        ("cp1252-quotes", splice("Jane O'Neil", b"\x93Jane\x94")),
        ("utf8-bom-then-invalid", b"\xef\xbb\xbf" + splice("Jane O'Neil", b"\xff")),
    ]:
        c.add(name, body, "body")

    # SQS-illegal characters in an event that breaks another rule as well
    event = ev({"recipient.name": "Jane\uffff\u0000"}, c.eid("raw-uffff-and-nul-in-name"))
    c.add("raw-uffff-and-nul-in-name", js(event), "recipient.name", sqs=False)
    event = ev({"document_key": "\ufffe/../x"}, c.eid("raw-ufffe-in-traversal-key"))
    c.add("raw-ufffe-in-traversal-key", js(event), "document_key", sqs=False)

    # overlong UTF-8 written as percent-encoded text: plain text, so another rule must break
    for name, value in {
        "percent-overlong-dots-and-traversal": "%C0%AE%C0%AE/../etc/passwd",
        "percent-overlong-and-nul": "%C0%AE%C0%AE/%C0%AE%C0%AE/\u0000",
        "percent-overlong-and-empty-segment": "%C0%AE%C0%AE//etc/passwd",
        "percent-overlong-slash-and-trailing-slash": "..%c0%af..%c0%af/",
        "percent-overlong-and-dot-segment": "%e0%80%ae/./x",
    }.items():
        c.event(name, {"document_key": value}, "document_key")
    c.event("percent-overlong-in-event-id-with-lf", {"event_id": "%C0%AE%C0%AE\n"}, "event_id")

    # ------------------------------------------------------------------ envelopes inside envelopes
    c.category = "envelope-nesting"
    inner_event = ev(None)
    c.add("sns-in-sns", js(sns(js(sns(js(inner_event))))), "Message")
    c.add("sns-in-sns-message-object", js(sns(js(sns(inner_event)))), "Message")
    c.add("eventbridge-in-eventbridge", js(eb(eb(inner_event))), "detail")
    c.add("sns-in-eventbridge-detail", js(eb(sns(js(inner_event)))), "detail")
    c.add("sns-in-eventbridge-detail-via-sns", js(sns(js(eb(sns(js(inner_event)))))), None)
    c.add("eventbridge-in-eventbridge-via-sns", js(sns(js(eb(eb(inner_event))))), None)
    c.add("sns-sns-eventbridge", js(sns(js(sns(js(eb(inner_event)))))), None)
    c.add("sns-sns-sns", js(sns(js(sns(js(sns(js(inner_event))))))), None)
    c.add("eventbridge-3-deep", js(eb(eb(eb(inner_event)))), None)
    c.add("eventbridge-sns-eventbridge", js(eb(sns(js(eb(inner_event))))), None)
    nested = inner_event
    for _ in range(100):
        nested = eb(nested)
    c.add("eventbridge-100-deep", js(nested), None)
    nested = js(inner_event)
    for _ in range(8):
        nested = js(sns(nested))
    assert len(nested.encode()) < 200_000, len(nested)
    c.add("sns-8-deep", nested, None)
    c.add("detail-string-holding-sns", js(eb(js(sns(js(inner_event))))), "detail")

    # ------------------------------------------------------------------ SNS envelope
    c.category = "sns-envelope"
    event_text = js(ev(None))
    for name, message in {
        "message-not-json": "hello",
        "message-empty": "",
        "message-space": " ",
        "message-open-brace": "{",
        "message-single-quotes": str(ev(None)),
        "message-trailing-garbage": event_text + "x",
        "message-two-events": event_text + event_text,
        "message-bom": "\ufeff" + event_text,
        "message-nan": event_text.replace('"7d"', "NaN"),
        "message-raw-newline-in-string": event_text.replace("Jane O'Neil", "Jane\nBcc: x@evil.example"),
        "message-array": "[" + event_text + "]",
        "message-empty-array": "[]",
        "message-number": "42",
        "message-null": "null",
        "message-true": "true",
        "message-json-string": js("hello"),
        "message-double-encoded-event": js(event_text),
        "message-truncated": event_text[:-1],
        "message-xml": "<event/>",
    }.items():
        c.add(name, js(sns(message)), "Message")
    for name, message in {
        "message-object": ev(None, c.eid("message-object")),
        "message-array-value": [event_text],
        "message-number-value": 42,
        "message-null-value": None,
        "message-bool-value": True,
    }.items():
        c.add(name, js(sns(message)), "Message")
    c.add("message-missing", js(sns("x", Message=DEL)), None)
    c.add("subscription-confirmation", js(sns(
        "You have chosen to subscribe to the topic arn:aws:sns:eu-west-1:123456789012:doclink-events.",
        Type="SubscriptionConfirmation", Token="2336412f37fb687f5d51e6e2425e",
        SubscribeURL="https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription")), None)
    c.add("unsubscribe-confirmation", js(sns("You have chosen to deactivate subscription.",
                                             Type="UnsubscribeConfirmation")), None)
    c.add("type-lowercase", js(sns(event_text, Type="notification")), None)
    c.add("type-missing", js(sns(event_text, Type=DEL)), None)
    c.add("type-number", js(sns(event_text, Type=1)), None)
    for name, changes, field in [
        ("inner-bad-email", {"recipient.email": "jane@"}, "recipient.email"),
        ("inner-crlf-name", {"recipient.name": "Jane" + bcc}, "recipient.name"),
        ("inner-unknown-template", {"template": "ransom_note"}, "template"),
        ("inner-traversal-key", {"document_key": "../../etc/passwd"}, "document_key"),
        ("inner-expiry-31d", {"expires_in": "31d"}, "expires_in"),
        ("inner-case-number-injection", {("data", "case_number"): "A" + bcc}, "data.case_number"),
        ("inner-missing-event-id", {"event_id": DEL}, "event_id"),
        ("inner-recipient-string", {"recipient": "jane@example.org"}, "recipient"),
        ("inner-bidi-name", {"recipient.name": "Jane \u202e"}, "recipient.name"),
        ("inner-locale-de", {"locale": "de"}, "locale"),
        ("inner-data-array", {"data": []}, "data"),
    ]:
        c.add(name, js(sns(js(ev(changes, c.eid(name))))), field)
    c.add("inner-empty-object", js(sns("{}")), "event_id")
    c.add("inner-escaped-ascii-bad-email", js(sns(js(ev({"recipient.email": "jöhn@example.org"}), ascii=True)),
                                                ascii=True), "recipient.email")
    big = ev({"template": "x"}, c.eid("inner-near-256k-bad-template"))
    big["padding"] = "p" * 250_000
    c.add("inner-near-256k-bad-template", js(sns(js(big))), "template")
    c.add("eventbridge-via-sns-bad-email", js(sns(js(eb(ev({"recipient.email": "a@b"}))))), "recipient.email")
    c.add("eventbridge-via-sns-detail-string", js(sns(js(eb(js(ev(None)))))), "detail")
    # SNS raw message delivery on: the body is the event itself
    for name, changes, field in [
        ("raw-delivery-bad-email", {"recipient.email": "a@b.co>"}, "recipient.email"),
        ("raw-delivery-missing-template", {"template": DEL}, "template"),
        ("raw-delivery-crlf-subject", {("data", "subject"): "Hi" + bcc}, "data.subject"),
        ("raw-delivery-traversal", {"document_key": "a/../b"}, "document_key"),
        ("raw-delivery-zero-expiry", {"expires_in": "0s"}, "expires_in"),
    ]:
        c.event(name, changes, field)

    # ------------------------------------------------------------------ EventBridge envelope
    c.category = "eventbridge-envelope"
    for name, detail in {
        "detail-string": js(ev(None, c.eid("detail-string"))),
        "detail-empty-string": "",
        "detail-array": [ev(None, c.eid("detail-array"))],
        "detail-empty-array": [],
        "detail-number": 1,
        "detail-true": True,
        "detail-null": None,
    }.items():
        c.add(name, js(eb(detail)), "detail")
    c.add("detail-missing", js(eb(None, detail=DEL)), None)
    c.add("detail-empty-object", js(eb({})), "event_id")
    for name, changes, field in [
        ("bad-email", {"recipient.email": "<a@b.co>"}, "recipient.email"),
        ("lf-name", {"recipient.name": "Jane\nBcc: x@evil.example"}, "recipient.name"),
        ("unknown-template", {"template": "DECISION_LETTER"}, "template"),
        ("leading-slash-key", {"document_key": "/etc/passwd"}, "document_key"),
        ("bad-expiry", {"expires_in": "1y"}, "expires_in"),
        ("too-many-data", {"data": {f"k{i}": "v" for i in range(65)}}, "data"),
        ("missing-recipient", {"recipient": DEL}, "recipient"),
        ("event-id-nul", {"event_id": "evt\u0000"}, "event_id"),
        ("locale-nul", {"locale": "en\u0000"}, "locale"),
        ("data-subject-number", {("data", "subject"): 5}, "data.subject"),
    ]:
        c.add(name, js(eb(ev(changes, c.eid(name)))), field)

    # ------------------------------------------------------------------ template and locale
    c.category = "template-locale"
    for name, value in {
        "traversal": "../decision_letter",
        "upper-case": "DECISION_LETTER",
        "title-case": "Decision_Letter",
        "trailing-space": "decision_letter ",
        "leading-space": " decision_letter",
        "nul": "decision_letter\u0000",
        "lf": "decision_letter\n",
        "crlf": "correspondence\r\n",
        "hyphen": "decision-letter",
        "no-separator": "decisionletter",
        "empty": "",
        "unknown": "ransom_note",
        "cyrillic-e": "decision_l\u0435tter",
        "zero-width": "decision_letter\u200b",
        "fullwidth-d": "\uff44ecision_letter",
        "traversal-to-other": "decision_letter/../correspondence",
        "file-path": "templates/decision_letter.html",
        "file-extension": "decision_letter.html",
        "jinja-braces": "{{decision_letter}}",
        "two-names": "decision_letter;correspondence",
        "percent-encoded": "%64ecision_letter",
        "absolute-path": "/etc/passwd",
    }.items():
        c.event(f"template-{name}", {"template": value}, "template")
    for name, value in {
        "de": "de",
        "de-ch": "de-CH",
        "nul": "en\u0000",
        "empty": "",
        "english": "english",
        "traversal": "../en",
        "traversal-deep": "fr/../../etc",
        "fr-suffix-traversal": "fr-../../../etc/passwd",
        "fr-dash-nul": "fr-\u0000",
        "en-crlf-header": "en-\r\nX-Injected: 1",
        "fr-underscore-lf": "fr_\n",
        "one-letter": "e",
        "zz": "zz",
        "fullwidth": "\uff45\uff4e",
        "cyrillic-e": "\u0435n",
        "zero-width": "en\u200b",
        "long-subtag": "en-" + "x" * 100,
        "star": "*",
        "accept-language": "fr-CA,fr;q=0.9,en;q=0.8",
    }.items():
        c.event(f"locale-{name}", {"locale": value}, "locale")

    # ------------------------------------------------------------------ expires_in
    c.category = "expires-in"
    for name, value in {
        "0s": "0s",
        "0d": "0d",
        "0d0h": "0d0h",
        "minus-1d": "-1d",
        "minus-0s": "-0s",
        "plus-7d": "+7d",
        "1-5h": "1.5h",
        "0-5d": "0.5d",
        "space-inside": "7 d",
        "space-between-groups": "7d 12h",
        "31d": "31d",
        "30d1s": "30d1s",
        "2592001s": "2592001s",
        "721h": "721h",
        "5w": "5w",
        "30d30d": "30d30d",
        "20-nines-d": "99999999999999999999d",
        "2-pow-32-seconds": "4294967296s",
        "1y": "1y",
        "1mo": "1mo",
        "no-unit": "7",
        "unit-only": "d",
        "unit-first": "d7",
        "trailing-digits": "7d7",
        "empty": "",
        "iso8601": "P7D",
        "negative-group": "1d-1h",
        "nul": "7d\u0000",
        "exponent": "1e3s",
        "hex": "0x10h",
        "underscore": "1_000s",
        "fullwidth-digit": "\uff17d",
        "arabic-indic-digit": "\u0667d",
        "vulgar-half": "\u00bdd",
        "words": "7 days",
        "word-week": "1week",
        "never": "never",
        "nan": "NaN",
        "infinity": "inf",
    }.items():
        c.event(name, {"expires_in": value}, "expires_in")

    # ------------------------------------------------------------------ data
    c.category = "data"
    c.event("100-entries", {"data": {f"k{i}": "v" for i in range(100)}}, "data")
    c.event("65-entries-empty-values", {"data": {f"k{i}": "" for i in range(65)}}, "data")
    c.event("one-bad-among-many", {"data": {**{f"k{i}": "v" for i in range(10)}, "subject": "S\r\nBcc: x@evil.example"}}, "data.subject")
    c.event("null-value-reference", {"data": {"reference": None}}, "data.reference")
    c.event("nested-object-value", {"data": {"case_number": {"$gt": ""}}}, "data.case_number")
    c.event("bool-message", {("data", "message"): False}, "data.message")
    c.event("number-key-value", {"data": {"0": 0}}, "data.0")
    # Data keys are 1 to 64 ASCII letters, digits or "_": a dotted key is refused as `data`.
    c.event("dotted-key-number", {"data": {"a.b": 1}}, "data")
    c.event("message-2001-with-newlines", {("data", "message"): ("para\n\n" * 334)[:2001]}, "data.message")
    c.event("subject-2001", {("data", "subject"): "s" * 2001}, "data.subject")

    # ------------------------------------------------------------------ event_id
    c.category = "event-id"
    for name, value in {
        "empty": "",
        "nul": "\u0000",
        "nul-suffix": "evt-1\u0000",
        "lf": "evt-1\n",
        "crlf": "evt-1\r\nX: 1",
        "tab-only": "\t",
        "del": "evt\u007f",
        "nel": "evt\u0085",
        "c1-csi": "evt\u009b",
        "ansi": "evt\u001b[0m",
        "bell": "evt\u0007",
    }.items():
        c.event(name, {"event_id": value}, "event_id")

    return c


# Bodies the rules accept: the reference reader must not reject them.
def valid_controls() -> list[str]:
    inner = ev(None)
    return [
        js(BASE),
        js(BASE, ascii=True),
        js(BASE, indent=2),
        js(ev({"recipient.name": "<script>alert(1)</script>"})),
        js(ev({"recipient.name": "Jane%0d%0aBcc: x@evil.example"})),
        js(ev({"recipient.name": "Jane\u2028O'Neil"})),
        js(ev({"recipient.name": ""})),
        js(ev({"recipient.name": None})),
        js(ev({"recipient.name": "J" * 256})),
        js(ev({"recipient.name": DEL, "locale": DEL, "expires_in": DEL, "data": DEL})),
        js(ev({"document_key": "a/%00.pdf"})),
        js(ev({"document_key": "a\u2028b"})),
        js(ev({"document_key": ".../x"})),
        js(ev({"document_key": "a/.../b"})),
        js(ev({"document_key": "..\\..\\etc"})),
        js(ev({"document_key": "%C0%AE%C0%AE"})),
        js(ev({"document_key": "d" * 1024})),
        js(ev({"document_key": "é" * 512})),
        js(ev({"event_id": "E" * 256})),
        js(ev({"locale": "fr-CA"})),
        js(ev({"locale": "en"})),
        js(ev({"expires_in": "1d12h"})),
        js(ev({"expires_in": "30d"})),
        js(ev({"expires_in": "720h"})),
        js(ev({"expires_in": "4w"})),
        js(ev({"recipient.email": "l" * 64 + "@example.org"})),
        js(ev({"recipient.email": "l" * 64 + "@" + ("d" * 61 + ".") * 3 + "org"})),  # 254
        js(ev({"recipient.email": "jane.o'neil+tag@mail.example.org"})),
        js(ev({"recipient.email": "jane%example.org@evil.example"})),
        js(ev({"data": {f"k{i}": "v" for i in range(64)}})),
        js(ev({("data", "message"): "Para 1\n\nPara 2\r\n"})),
        js(ev({("data", "reference"): "r" * 2000})),
        js(ev({("data", "case_number"): "ABC%0d%0a"})),
        js({**ev(None), "producer": "ignored", "Type": "Other"}),
        js(sns(js(inner))),
        js(eb(inner)),
        js(sns(js(eb(inner)))),
    ]


def check(corpus: Corpus) -> list[str]:
    failures = []
    for body in valid_controls():
        rejected = reference_reject(body.encode())
        if rejected:
            failures.append(f"valid control rejected ({rejected}): {body[:120]!r}")
    for case in corpus.cases:
        raw = raw_of(case)
        problem = sqs_problem(raw)
        if case["sqs"] and problem:
            failures.append(f"{case['id']}: marked sqs true but {problem}")
        if not case["sqs"] and not problem:
            failures.append(f"{case['id']}: marked sqs false but SQS could carry it")
        rejected = reference_reject(raw)
        if rejected is None:
            failures.append(f"{case['id']}: the rules accept this body")
        elif case["expect_field"] is not None and rejected.field != case["expect_field"]:
            failures.append(f"{case['id']}: expected {case['expect_field']}, the rules give {rejected}")
    if len(corpus.cases) < MIN_CASES:
        failures.append(f"only {len(corpus.cases)} cases; at least {MIN_CASES} wanted")
    return failures


def main() -> int:
    sys.setrecursionlimit(10_000)
    corpus = build()
    failures = check(corpus)
    counts = Counter(case["category"] for case in corpus.cases)
    width = max(map(len, counts))
    for category, n in counts.items():
        print(f"{category:<{width}}  {n:4d}")
    nulls = sum(case["expect_field"] is None for case in corpus.cases)
    unsent = sum(not case["sqs"] for case in corpus.cases)
    print(f"{'total':<{width}}  {len(corpus.cases):4d}  ({nulls} with expect_field null, {unsent} not sendable through SQS)")
    if failures:
        for failure in failures:
            print("FAIL", failure, file=sys.stderr)
        return 1
    with OUT.open("w", encoding="ascii", newline="\n") as f:
        for case in corpus.cases:
            f.write(json.dumps(case, ensure_ascii=True, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
    # The tricky but valid events: doclink must accept every one.
    with VALID_OUT.open("w", encoding="ascii", newline="\n") as f:
        for body in valid_controls():
            f.write(json.dumps({"body": body}, ensure_ascii=True, separators=(",", ":")) + "\n")
    print(f"wrote {VALID_OUT} ({len(valid_controls())} valid events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The PII policy: which fields about people are kept, dropped or hashed before publishing.

Pure and I/O free except for reading ``pii.secret_file`` once when the policy is built. The core
decodes the canonical value of a typed record, calls :meth:`PiiPolicy.apply`, and re-encodes it;
when no rule changes anything (``policy.active`` is False) it skips the policy entirely.

Rules (``[pii.rules]``), each ``KEY = "keep" | "drop" | "hash"``. A key is::

    [EVENT_NAME ":"] NAME          a name rule: the field NAME at any depth
    [EVENT_NAME ":"] A.B.C         a path rule: the field at that path from the root of the value
    [EVENT_NAME ":"] $.NAME        a path rule for a top-level field (``$.`` marks a path)

* A path starts at the root of the published value: ``metadata.user_login``, ``body.student_sis_id``,
  ``event.session.id``. Lists are transparent: ``body.items.email`` reaches the ``email`` of every
  object in the list ``body.items``.
* A backslash escapes the next character: ``\\.`` is a dot inside a field name, ``\\:`` a colon,
  ``\\\\`` a backslash. Canvas's Caliper extensions live under the key ``com.instructure.canvas``,
  so ``event.actor.extensions.com\\.instructure\\.canvas.user_login``. (In TOML write such keys as
  literal strings, in single quotes, where a backslash is not an escape.)
* ``EVENT_NAME:`` scopes a rule to the records whose ``event_name`` is EVENT_NAME, e.g.
  ``user_created:body.name`` (a person's name there, a course's name in ``course_created``).
* Precedence, most specific first: a scoped path rule, a path rule, a scoped name rule, a name rule.
  So ``"body.course.name" = "keep"`` can make an exception to a name rule ``name = "drop"``.
* ``drop`` removes the field. ``hash`` replaces its value by ``"hmac-sha256:" + hex`` of
  HMAC-SHA256(``pii.secret``, the value's canonical text): a string as it is (UTF-8), any other
  JSON value as compact JSON with sorted keys. The same value and secret always give the same
  hash, so hashed identifiers can still be joined on; another secret gives other hashes. A
  ``null`` stays ``null``. ``keep`` publishes the value as it is; the rules still apply inside it.
  A dropped or hashed object is not looked into.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

Action = Literal["keep", "drop", "hash"]

HASH_PREFIX = "hmac-sha256:"
#: A hashed value as published: the prefix and 64 lower-case hex digits.
HASHED_VALUE = re.compile(r"^hmac-sha256:[0-9a-f]{64}\Z")
#: A shorter secret would let anyone who guesses it test candidate logins and SIS ids offline.
MIN_SECRET_LENGTH = 16

_KEEP, _DROP, _HASH = 0, 1, 2
_ACTIONS = {"keep": _KEEP, "drop": _DROP, "hash": _HASH}


class PiiSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[pii]``: the secret for ``hash`` rules, and the rules (see the module docstring)."""

    secret: str = ""
    secret_file: str = ""
    rules: dict[str, Action] = {}


@dataclass(frozen=True, slots=True)
class RuleKey:
    """A parsed rule key."""

    event: str | None  # the event name it is scoped to, or None for every event
    path: tuple[str, ...]  # one segment and not is_path: a name rule
    is_path: bool


def _split(text: str, sep: str) -> list[str]:
    """Split at each unescaped ``sep``; a backslash keeps the next character as it is."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, "\\"))
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unescaped_index(text: str, sep: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            return i
        i += 1
    return -1


def parse_rule_key(key: str) -> RuleKey:
    """Split a rule key into its scope and segments; a ValueError names the key when malformed."""
    if key.endswith("\\") and (len(key) - len(key.rstrip("\\"))) % 2 == 1:
        raise ValueError(f"pii.rules[{key!r}]: ends with a lone backslash (write \\\\ for a backslash)")
    scope: str | None = None
    rest = key
    colon = _unescaped_index(key, ":")
    if colon >= 0:
        scope, rest = "".join(_split(key[:colon], ":")), key[colon + 1:]
        if not scope:
            raise ValueError(f"pii.rules[{key!r}]: empty event name before ':'")
    if _unescaped_index(rest, ":") >= 0:
        raise ValueError(f"pii.rules[{key!r}]: more than one ':' (write \\: for a colon in a field name)")
    is_path = rest.startswith("$.")
    if is_path:
        rest = rest[2:]
    segments = _split(rest, ".")
    is_path = is_path or len(segments) > 1
    if any(not s for s in segments):
        raise ValueError(f"pii.rules[{key!r}]: a field name in it is empty (a doubled, leading or trailing '.')")
    return RuleKey(scope, tuple(segments), is_path)


@dataclass(slots=True)
class _Node:
    """A node of the path-rule trie: the action for the path that ends here, and longer paths."""

    action: int | None = None
    children: dict[str, _Node] = field(default_factory=dict)


def _insert(root: _Node, path: tuple[str, ...], action: int) -> None:
    node = root
    for segment in path:
        node = node.children.setdefault(segment, _Node())
    node.action = action


def _merge(base: _Node, over: _Node) -> _Node:
    """A new trie with the paths of both; where both have an action, ``over``'s wins."""
    node = _Node(over.action if over.action is not None else base.action)
    for key in base.children.keys() | over.children.keys():
        b, o = base.children.get(key), over.children.get(key)
        node.children[key] = _merge(b or _Node(), o or _Node())
    return node


def _changes(root: _Node, names: Mapping[str, int]) -> bool:
    if any(a != _KEEP for a in names.values()):
        return True
    stack = [root]
    while stack:
        node = stack.pop()
        if node.action is not None and node.action != _KEEP:
            return True
        stack.extend(node.children.values())
    return False


#: A compiled lookup table for one level of an object: field name -> (action, table for its children).
#: Name rules are entries of every level's table; path rules add entries (and sub-tables) on their path.
_Table = dict[str, tuple[int, "_Table"]]


def _compile(node: _Node, names: dict[str, int]) -> tuple[_Table, bool]:
    """(the table of the root level, whether any rule drops or hashes)."""
    names_table: _Table = {}
    for name, action in names.items():
        names_table[name] = (action, names_table)

    def level(n: _Node) -> _Table:
        table = dict(names_table)
        for key, child in n.children.items():
            action = child.action if child.action is not None else names.get(key, _KEEP)
            table[key] = (action, level(child))
        return table

    return level(node), _changes(node, names)


@dataclass(frozen=True, slots=True)
class _Rules:
    """The compiled rules in force for one event name (or for all events)."""

    root: _Table
    names: _Table  # the table below any field no path rule reaches: the name rules alone
    active: bool


def _rules(paths: _Node, names: dict[str, int]) -> _Rules:
    root, active = _compile(paths, names)
    names_only, _ = _compile(_Node(), names)
    return _Rules(root, names_only, active)


def _read_secret(settings: PiiSettings) -> str:
    if settings.secret and settings.secret_file:
        raise ValueError("set only one of pii.secret and pii.secret_file (env BRIDGE_PII_SECRET / "
                         "BRIDGE_PII_SECRET_FILE)")
    if settings.secret_file:
        try:
            return Path(settings.secret_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"pii.secret_file: cannot read {settings.secret_file}: "
                             f"{exc.strerror or exc}") from None
    return settings.secret


class PiiPolicy:
    """The compiled rules of ``[pii]``. Build it once; :meth:`apply` it to every published value."""

    def __init__(self, settings: PiiSettings) -> None:
        global_paths: _Node = _Node()
        global_names: dict[str, int] = {}
        scoped: dict[str, tuple[_Node, dict[str, int]]] = {}
        uses_hash = False
        for key, action_name in settings.rules.items():
            if action_name not in _ACTIONS:
                raise ValueError(f"pii.rules[{key!r}]: unknown action {action_name!r} (keep, drop or hash)")
            action = _ACTIONS[action_name]
            uses_hash = uses_hash or action == _HASH
            rule = parse_rule_key(key)
            if rule.event is None:
                paths, names = global_paths, global_names
            else:
                paths, names = scoped.setdefault(rule.event, (_Node(), {}))
            if rule.is_path:
                _insert(paths, rule.path, action)
            else:
                names[rule.path[0]] = action
        secret = _read_secret(settings)
        if uses_hash:
            if not secret:
                raise ValueError(
                    "pii.secret is required by the pii rules that hash (set BRIDGE_PII_SECRET_FILE to a file "
                    "holding a random secret, or pii.secret / BRIDGE_PII_SECRET); e.g. openssl rand -hex 32"
                )
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"pii.secret is too short ({len(secret)} characters): use at least {MIN_SECRET_LENGTH} random "
                    "characters, e.g. openssl rand -hex 32"
                )
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self._global = _rules(global_paths, global_names)
        self._by_event: dict[str, _Rules] = {
            event: _rules(_merge(global_paths, paths), {**global_names, **names})
            for event, (paths, names) in scoped.items()
        }
        #: False when no rule drops or hashes anything: the core can skip the policy.
        self.active = self._global.active or any(r.active for r in self._by_event.values())
        self._encode = msgspec.json.Encoder(order="sorted").encode

    @classmethod
    def from_rules(cls, rules: Mapping[str, Action], secret: str = "") -> PiiPolicy:
        """Shorthand for tests and tools: a policy from rules and an inline secret."""
        return cls(PiiSettings(secret=secret, rules=dict(rules)))

    def hash_value(self, value: Any) -> str:
        """``"hmac-sha256:" + hex`` of HMAC-SHA256(secret, the value's canonical text)."""
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else self._encode(value)
        mac = self._mac.copy()
        mac.update(data)
        return HASH_PREFIX + mac.hexdigest()

    def apply(self, tree: dict[str, Any]) -> dict[str, Any]:
        """The published value (decoded JSON) with the rules applied.

        Returns a new dict and leaves ``tree`` unchanged; returns ``tree`` itself when no rule drops or
        hashes anything in records of its event type.
        """
        event = tree.get("event_name")
        rules = self._by_event.get(event, self._global) if isinstance(event, str) else self._global
        if not rules.active:
            return tree
        return self._object(tree, rules.root, rules.names)

    def _object(self, obj: dict[str, Any], table: _Table, names: _Table) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            entry = table.get(key)
            if entry is None:
                # No rule names this field: only name rules can apply below it.
                out[key] = self._value(value, names, names) if names else value
                continue
            action, sub = entry
            if action == _DROP:
                continue
            if action == _HASH:
                out[key] = None if value is None else self.hash_value(value)
                continue
            out[key] = self._value(value, sub, names)
        return out

    def _value(self, value: Any, table: _Table, names: _Table) -> Any:
        """A value below a field: objects and lists walked with ``table``, anything else as it is."""
        cls = value.__class__
        if cls is dict:
            return self._object(value, table, names)
        if cls is list:
            return [self._value(item, table, names) for item in value]
        return value

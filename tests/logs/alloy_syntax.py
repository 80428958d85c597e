"""A parser for the Alloy configuration syntax subset the stack renders (no alloy binary here).

Blocks (`name.part "label" { ... }`), attributes (`key = value`), strings, numbers, booleans,
null, lists, objects, references (`discovery.docker.containers.targets`), standard-library calls
(`sys.env("NODE_NAME")`) and string concatenation with `+`; `//` and `/* */` comments. Anything else is a syntax error naming the line, so the test fails on text that
`alloy fmt` would reject in these forms.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+) | (?P<nl>\n) | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?[0-9]+(?:\.[0-9]+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}\[\]=,.()+])
""", re.VERBOSE | re.DOTALL)


class AlloySyntaxError(ValueError):
    """The text is not valid in the supported Alloy subset; the message names the line."""


@dataclass(frozen=True)
class Ref:
    """A reference to another component's export, e.g. `loki.write.loki.receiver`."""

    path: str


@dataclass(frozen=True)
class Call:
    """A standard-library call, e.g. `sys.env("NODE_NAME")`."""

    function: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Concat:
    """`a + b + ...`: string concatenation, evaluated by Alloy at load time."""

    parts: tuple[Any, ...]


@dataclass
class Block:
    """A block: its dotted name, optional label, attributes and nested blocks in order."""

    name: str
    label: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    blocks: list["Block"] = field(default_factory=list)

    def children(self, name: str) -> list["Block"]:
        return [b for b in self.blocks if b.name == name]

    def component(self, name: str, label: str) -> "Block":
        found = [b for b in self.blocks if b.name == name and b.label == label]
        if len(found) != 1:
            raise KeyError(f"{name} {label!r}: expected exactly one such block, found {len(found)}")
        return found[0]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos, line = 0, 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise AlloySyntaxError(f"line {line}: unexpected {text[pos:pos + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group()
        if kind not in ("ws", "nl", "comment"):
            out.append((kind, value, line))
        line += value.count("\n")
        pos = match.end()
    out.append(("eof", "", line))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, ahead: int = 0) -> tuple[str, str, int]:
        return self.toks[self.i + ahead]

    def take(self, kind: str, value: str | None = None) -> str:
        tok_kind, tok_value, line = self.toks[self.i]
        if tok_kind != kind or (value is not None and tok_value != value):
            raise AlloySyntaxError(f"line {line}: expected {value or kind}, found {tok_value or 'end of file'!r}")
        self.i += 1
        return tok_value

    def body(self, until: str) -> Block:
        block = Block("")
        while not (self.peek()[0] == until or (self.peek()[1] == "}" and until == "}")):
            name = self.dotted()
            if self.peek()[1] == "=":
                self.take("punct", "=")
                if "." in name:
                    raise AlloySyntaxError(f"line {self.peek()[2]}: attribute name {name!r} may not be dotted")
                if name in block.attrs:
                    raise AlloySyntaxError(f"line {self.peek()[2]}: attribute {name!r} set twice")
                block.attrs[name] = self.expr()
            else:
                label = json.loads(self.take("string")) if self.peek()[0] == "string" else None
                self.take("punct", "{")
                inner = self.body("}")
                self.take("punct", "}")
                block.blocks.append(Block(name, label, inner.attrs, inner.blocks))
        return block

    def dotted(self) -> str:
        parts = [self.take("ident")]
        while self.peek()[1] == ".":
            self.take("punct", ".")
            parts.append(self.take("ident"))
        return ".".join(parts)

    def expr(self) -> Any:
        parts = [self.term()]
        while self.peek()[1] == "+":
            self.take("punct", "+")
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Concat(tuple(parts))

    def term(self) -> Any:
        kind, value, line = self.peek()
        if kind == "string":
            self.i += 1
            return json.loads(value)
        if kind == "number":
            self.i += 1
            return float(value) if "." in value else int(value)
        if value in ("true", "false", "null"):
            self.i += 1
            return {"true": True, "false": False, "null": None}[value]
        if kind == "ident":
            name = self.dotted()
            if self.peek()[1] == "(":
                return Call(name, tuple(self.sequence("(", ")", self.expr)))
            return Ref(name)
        if value == "[":
            return self.sequence("[", "]", self.expr)
        if value == "{":
            return dict(self.sequence("{", "}", self.pair))
        raise AlloySyntaxError(f"line {line}: expected a value, found {value!r}")

    def pair(self) -> tuple[str, Any]:
        key = json.loads(self.take("string")) if self.peek()[0] == "string" else self.take("ident")
        self.take("punct", "=")
        return key, self.expr()

    def sequence(self, open_: str, close: str, item: Any) -> list[Any]:
        self.take("punct", open_)
        items = []
        while self.peek()[1] != close:
            items.append(item())
            if self.peek()[1] != close:
                self.take("punct", ",")
        self.take("punct", close)
        return items


def parse(text: str) -> Block:
    """The config as a root block whose `blocks` are the top-level components."""
    parser = _Parser(text)
    root = parser.body("eof")
    parser.take("eof")
    return root

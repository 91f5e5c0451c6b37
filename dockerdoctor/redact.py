"""Secrets out of a snapshot: `collect` runs every file and command output it saves through `Redactor`.

A snapshot is made to be sent to someone else. `ps auxwww`, `docker inspect` (container Env), unit files,
env files, daemon.json and a registry's config.yml hold passwords, tokens and proxy credentials
(`http://user:pass@proxy:3128`). Each such value becomes `redacted-<12 hex>`: a salted hash, one salt per
snapshot, so two equal secrets stay equal inside it (DD407 compares the replicas' REGISTRY_HTTP_SECRET)
and the value itself cannot be looked up. Names, hosts and ports stay: the rules need them. PEM blocks
(certificates) stay byte for byte; the text around them is redacted. The `collect --script` collector
(dockerdoctor/data/scrub.awk) has no such hash in awk: it numbers the values instead, `redacted-<n>`.
"""

from __future__ import annotations

import hashlib
import os
import re

# Words that make a name secret: PASSWORD, REGISTRY_HTTP_SECRET, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, api-key ...
_WORD = re.compile(rb"pass(?:word|wd|phrase)?|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential")
# Every pattern below is matched at a position already found, and none can backtrack over its own input:
# the scan stays linear on a 4 MiB line of any content (issue 13: no input makes a parser quadratic).
_TOKEN = re.compile(rb"[A-Za-z0-9_.-]+")
_VALUE = re.compile(rb"[^\s\"',;\[][^\s\"',;]*")  # not `[`: NAME=[...] is a TOML array, read below
_FLAG_SEP = re.compile(rb"=|[ \t]+(?=[^-\s])")
_JSON_SEP = re.compile(rb"\"[ \t]*:[ \t]*\"")
_JSON_VALUE = re.compile(rb"[^\"\n]+")
_YAML_SEP = re.compile(rb"[ \t]*:[ \t]+")
_YAML_VALUE = re.compile(rb"[^\s#\"'][^\n#]*")
_USERINFO = re.compile(rb"[^:/@\s\"'<>]*:")
_PASSWORD = re.compile(rb"[^@/\s\"'<>]+(?=@)")
_SCHEME_END = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]{0,31}\Z")
_AUTH = re.compile(rb"(?i)authorization:[ \t]*(?:basic|bearer)[ \t]+")
_AUTH_VALUE = re.compile(rb"[A-Za-z0-9+/=._~-]+")
# TOML (hosts.toml `[host."...".header]`, containerd's registry auth): `authorization = ["Basic ..."]`,
# `password = "..."`; a string or an array of strings, on one line or several.
_SECRET_NAME = (rb"[a-z0-9_.-]{0,64}(?:pass(?:word|wd|phrase)?|secret|token|api[_-]?key|access[_-]?key"
                rb"|private[_-]?key|credential)[a-z0-9_.-]{0,64}")
_TOML_KEY = re.compile(rb"(?im)^[ \t]*[\"']?(?:authorization|auth|" + _SECRET_NAME
                       + rb")[\"']?[ \t]*=[ \t]*(?=[\[\"'])")
_TOML_GAP = re.compile(rb"[\s,]*")
_TOML_STRING = re.compile(rb"\"[^\"\n]*\"|'[^'\n]*'")
_SCHEME_WORD = re.compile(rb"(?i)(?:basic|bearer|token)[ \t]+")
_QUOTED = re.compile(rb"\"[^\"\n]*\"|'[^'\n]*'")  # a quoted value: up to the matching quote, on its line
_FLAG_QSEP = re.compile(rb"=|[ \t]+(?=[\"'])")
_LOGIN = re.compile(rb"(?<![A-Za-z0-9_.-])login[ \t]")
_LOGIN_P = re.compile(rb"[ \t]-p(?:[ \t]+|=)")
MAX_LOGIN = 4096  # how far on a `login` line a `-p VALUE` is looked for
_PEM_END = re.compile(rb"-----END [^\n-]{0,64}-----")
_NAME_HEAD = re.compile(rb"[A-Za-z0-9_.-]*\Z")  # searched in a window of MAX_NAME bytes only
_NAME_TAIL = re.compile(rb"[A-Za-z0-9_.-]{0,128}")
MAX_NAME = 128


def _first_on_line(data: bytes, start: int) -> bool:
    """Only blanks (at most 256) between the line's start and `start`."""
    j = start
    while j > 0 and data[j - 1] in (32, 9) and start - j < 256:
        j -= 1
    return j == 0 or data[j - 1] == 10


class Redactor:
    """One per snapshot: `redact(data)` returns the data with each secret value replaced, and the count."""

    def __init__(self, salt: bytes | None = None) -> None:
        self.salt = salt if salt is not None else os.urandom(16)

    def _mask(self, value: bytes) -> bytes:
        if value.startswith(b"redacted-"):
            return value
        return b"redacted-" + hashlib.sha256(self.salt + value).hexdigest()[:12].encode()

    def _spans(self, data: bytes) -> list[tuple[int, int]]:
        """(start, end) of every secret value in data, in order, not overlapping."""
        spans: list[tuple[int, int]] = []
        for m in re.finditer(rb"://", data) if b"@" in data else ():  # scheme://user:password@host
            i = m.start()
            if not _SCHEME_END.search(data, max(0, i - 32), i):
                continue
            u = _USERINFO.match(data, m.end())
            pw = _PASSWORD.match(data, u.end()) if u else None
            if pw:
                spans.append((pw.start(), pw.end()))
        for m in _AUTH.finditer(data):
            v = _AUTH_VALUE.match(data, m.end())
            if v:
                spans.append((v.start(), v.end()))
        toml_end = 0
        for m in _TOML_KEY.finditer(data) if b"=" in data else ():
            if m.start() >= toml_end:
                toml_end = self._toml_values(data, m.end(), spans)
        pos = 0
        while b"login" in data and (lm := _LOGIN.search(data, pos)):  # docker login -u me -p VALUE
            eol = data.find(b"\n", lm.end(), lm.end() + MAX_LOGIN)
            eol = min(len(data), lm.end() + MAX_LOGIN) if eol < 0 else eol
            lp = _LOGIN_P.search(data, lm.end() - 1, eol)
            lv = (_QUOTED.match(data, lp.end(), eol) or _VALUE.match(data, lp.end(), eol)) if lp else None
            if lv:
                quoted = int(lv.group(0)[:1] in (b'"', b"'"))
                if lv.end() - lv.start() > 2 * quoted:
                    spans.append((lv.start() + quoted, lv.end() - quoted))
            pos = eol if eol > lm.end() else lm.end()
        skip_until = 0  # the end of the last value found: names inside it are not names
        lowered = data.lower()
        for w in _WORD.finditer(lowered):  # only the names that hold a secret word are looked at
            if w.start() < skip_until:
                continue
            head = _NAME_HEAD.search(data, max(0, w.start() - MAX_NAME), w.start())
            start = head.start() if head else w.start()
            tail = _NAME_TAIL.match(data, w.end())
            end = tail.end() if tail else w.end()
            if start < skip_until:
                continue
            skip_until = end
            if end - start > MAX_NAME or (start == w.start() - MAX_NAME and start > 0):
                continue  # no real name is this long
            name = data[start:end]
            v = None
            q = None  # a quoted value: NAME="a b", --password 'x', password: "x"
            if data[end:end + 1] == b"=" and not name.startswith(b"-"):  # NAME=value
                # not "NAME=", "next" (a JSON string holding NAME= with an empty value): the quote must not be the
                # one the name sits in
                opens = data[end + 1:end + 2]
                q = _QUOTED.match(data, end + 1) if opens != data[start - 1:start] or start == 0 else None
                v = None if q else _VALUE.match(data, end + 1)
            elif name.startswith(b"-"):  # --password VALUE, --token=VALUE
                sep = _FLAG_QSEP.match(data, end)
                q = _QUOTED.match(data, sep.end()) if sep else None
                sep = None if q else _FLAG_SEP.match(data, end)
                v = _VALUE.match(data, sep.end()) if sep else None
            elif data[start - 1:start] == b'"':  # "password": "value"
                sep = _JSON_SEP.match(data, end)
                v = _JSON_VALUE.match(data, sep.end()) if sep else None
            elif _first_on_line(data, start):  # password: value (YAML)
                sep = _YAML_SEP.match(data, end)
                q = _QUOTED.match(data, sep.end()) if sep else None
                v = None if q else (_YAML_VALUE.match(data, sep.end()) if sep else None)
            if q:
                a, b = q.start() + 1, q.end() - 1
                while b > a and data[b - 1:b] in (b" ", b"\t"):
                    b -= 1
                if b > a:
                    spans.append((a, b))
                skip_until = q.end()
            elif v and v.end() > v.start():
                value_end = v.end()
                while value_end > v.start() and data[value_end - 1:value_end] in (b" ", b"\t"):
                    value_end -= 1
                spans.append((v.start(), value_end))
                skip_until = v.end()
        spans.sort()
        out: list[tuple[int, int]] = []
        for a, b in spans:
            if out and a < out[-1][1]:
                continue
            out.append((a, b))
        return out

    @staticmethod
    def _toml_values(data: bytes, pos: int, spans: list[tuple[int, int]]) -> int:
        """The strings of a TOML value at `pos` (one string, or an array of them) into `spans`, keeping a leading
        `Basic `/`Bearer ` word; returns where the value ends. Each step consumes input: linear."""
        array = data[pos:pos + 1] == b"["
        if array:
            pos += 1
        while True:
            if array:
                pos = _TOML_GAP.match(data, pos).end()  # type: ignore[union-attr]
            q = _TOML_STRING.match(data, pos)
            if q is None:
                return pos
            a, b = q.start() + 1, q.end() - 1
            word = _SCHEME_WORD.match(data, a, b)
            a = word.end() if word else a
            if b > a:
                spans.append((a, b))
            pos = q.end()
            if not array:
                return pos

    def redact(self, data: bytes) -> tuple[bytes, int]:
        """Every secret value replaced, except inside a PEM block (-----BEGIN ... -----END ...-----), which
        stays byte for byte (a certificate must stay intact); a block with no end runs to the end of data."""
        if b"-----BEGIN " not in data:
            return self._redact(data)
        parts: list[bytes] = []
        count = pos = 0
        while pos < len(data):
            b = data.find(b"-----BEGIN ", pos)
            if b < 0:
                b = len(data)
            out, n = self._redact(data[pos:b])
            parts.append(out)
            count += n
            if b == len(data):
                break
            e = _PEM_END.search(data, b)
            pos = e.end() if e else len(data)
            parts.append(data[b:pos])
        return b"".join(parts), count

    def _redact(self, data: bytes) -> tuple[bytes, int]:
        spans = self._spans(data)
        if not spans:
            return data, 0
        parts: list[bytes] = []
        pos = 0
        count = 0
        for a, b in spans:
            masked = self._mask(data[a:b])
            count += masked != data[a:b]
            parts += [data[pos:a], masked]
            pos = b
        parts.append(data[pos:])
        return b"".join(parts), count

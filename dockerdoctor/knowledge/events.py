"""Stage one: parse pasted text (or a journal, or a container log) into events.

An event is one logical line with what it says: its kind (a client error, a journal line, an
access-log line, a config line, a command), its layer, host:port, HTTP method, path and status,
the file it came from, and the knowledge-base patterns it matched. Broken-up text is mended first:
terminal escapes and control bytes are removed, a line wrapped by a terminal or a mail client is
joined to its continuation when only the joined text means something, a line break inside a quoted
URL is closed up, and a journal line cut short ("…") is recognised from the start of a known phrase.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.knowledge.base import PHRASE_HEAD, AccessRule, KnowledgeBase, Pattern, load_kb
from dockerdoctor.net import HostPort
from dockerdoctor.safetext import printable as _printable

MAX_LINE = 4096  # a longer line is read as its first and last 2048 characters: regex time stays bounded
FULL_MEND_LINES = 5000  # up to this many lines every line is read and mended; beyond, only those with keywords
TRUNCATED_SCORE = 0.8  # a hit recognised from the start of a phrase counts this share of its weight

# ------------------------------------------------------------------------------------------ cleaning

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[PX^_][^\x1b]*\x1b\\|\x1b[@-Z\\-_]")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """Text without terminal escape sequences and control bytes (tabs and newlines stay; a CR-LF
    or a lone CR becomes a newline). Safe to print, and what the patterns see."""
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CTRL.sub("", text)


def printable(text: str) -> str:
    """One line safe for a terminal: a tab becomes a space, any other control byte is shown as an escape,
    never sent raw (the one rule for all output: dockerdoctor/safetext.py)."""
    return _printable(text, keep_newlines=True)


# ------------------------------------------------------------------------------------------ parameters

_URL = re.compile(r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*)"
                  r"(?::(?P<port>\d{1,5}))?(?P<path>/[^\s\"\\']*)?")
_ADDR_RES = [
    re.compile(r"pinging (?:container|docker) registry (?P<host>[\w.\-]+):(?P<port>\d+)"),
    re.compile(r"The push refers to (?:a )?repository \[(?P<host>[\w.\-]+):(?P<port>\d+)/"),
    re.compile(r"--insecure-registry[ =](?P<host>[\w.\-]+):(?P<port>\d+)"),
    re.compile(r"certs\.d/(?P<host>[\w.\-]+):(?P<port>\d+)"),
    re.compile(r"dial tcp (?P<host>\[[^\]]+\]|[\w.\-]+):(?P<port>\d+)"),
    re.compile(r"listen tcp4? (?P<host>[\w.\-]*):(?P<port>\d+)"),
    re.compile(r"HTTPSConnectionPool\(host='(?P<host>[^']+)', port=(?P<port>\d+)\)"),
    re.compile(r"HTTPConnectionPool\(host='(?P<host>[^']+)', port=(?P<port>\d+)\)"),
    re.compile(r"Failed to connect to (?P<host>[\w.\-]+) port (?P<port>\d+)"),
    re.compile(r"connect to (?P<host>[\d.]+) port (?P<port>\d+)"),
    re.compile(r"\b(?:docker|podman|skopeo|nerdctl|buildah|ctr|crictl)\b[^|;&]*?\s(?:docker://)?"
               r"(?P<host>(?:\d{1,3}\.){3}\d{1,3}|[a-z0-9][\w\-]*(?:\.[\w\-]+)+|localhost):(?P<port>\d{2,5})/"),
]
_FILE_RES = [
    re.compile(r"with file (?P<file>/[^:\s]+):"),
    re.compile(r"No such file or directory: '(?P<file>[^']+)'"),
    re.compile(r"open (?P<file>/[^:\s\"]+):"),
]
PUBLIC_REGISTRIES = {"registry-1.docker.io", "index.docker.io", "auth.docker.io", "docker.io",
                     "registry.hub.docker.com",
                     "production.cloudflare.docker.com"}


def extract_params(line: str) -> dict[str, Any]:
    """host, port, registry and file named in one line of text."""
    out: dict[str, Any] = {}
    best = None
    for m in _URL.finditer(line):
        path = m.group("path") or ""
        host = m.group("host").strip("[]").lower()
        if host.startswith("%2f"):  # a unix socket in a URL
            continue
        score = 2 if re.match(r"/v[12]/", path) else 1
        if best is None or score > best[0]:
            best = (score, host, m.group("port"), m.group("scheme"))
    if best is not None:
        if best[1] in PUBLIC_REGISTRIES:
            out["public"] = best[1]
        else:
            out["host"] = best[1]
            if best[2]:
                out["port"] = int(best[2])
            out["scheme"] = best[3]
    if "port" not in out and "public" not in out:  # a public registry's dial goes to its address or a proxy
        for rx in _ADDR_RES:
            am = rx.search(line)
            if am is None or not am.group("host"):
                continue
            host = am.group("host").strip("[]").lower()
            if host in PUBLIC_REGISTRIES:
                continue
            if "host" in out and out["host"] != host and rx.pattern.startswith("dial"):
                continue  # the name resolved to an address; keep the name
            out.setdefault("host", host)
            out["port"] = int(am.group("port"))
            break
    if out.get("host") and out.get("port"):
        out["registry"] = str(HostPort(out["host"], out["port"]))
    for rx in _FILE_RES:
        fm = rx.search(line)
        if fm:
            out["file"] = fm.group("file")
            break
    return out


def _group_params(m: re.Match[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in m.groupdict().items():
        if v:
            out.setdefault(re.sub(r"\d+$", "", k), v)
    return out


# ------------------------------------------------------------------------------------------ events


@dataclass
class Hit:
    pattern: Pattern
    line_no: int
    line: str
    params: dict[str, Any]
    line_end: int = 0  # the last physical line, when the event was joined from several
    truncated: bool = False  # recognised from the start of a phrase in a line that was cut short

    @property
    def weight(self) -> float:
        return self.pattern.weight * (TRUNCATED_SCORE if self.truncated else 1.0)


@dataclass
class Event:
    kind: str  # error, journal, access, config, command, text
    line_no: int
    line_end: int
    text: str
    hits: list[Hit] = field(default_factory=list)
    layer: str = ""
    host: str | None = None
    port: int | None = None
    status: int | None = None
    method: str | None = None
    path: str | None = None
    file: str | None = None  # the file a config line belongs to (from `cat FILE`, `# FILE`, `==> FILE <==`)
    client: str | None = None  # the user agent of an access-log line, or the command's program
    unit: str | None = None  # the journal unit (or program) of a journal line
    setting: dict[str, Any] = field(default_factory=dict)  # what a config line sets

    def as_dict(self) -> dict[str, Any]:
        keys = ("kind", "line_no", "line_end", "layer", "host", "port", "status", "method", "path", "file",
                "client", "unit")
        d = {k: getattr(self, k) for k in keys if getattr(self, k) not in (None, "")}
        if self.setting:
            d["setting"] = self.setting
        return d


_JOURNAL = re.compile(
    r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r" (?P<host>\S+) (?P<unit>[\w@.\-/]+?)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*)$")
_COMBINED = re.compile(
    r"(?P<client>\S+) \S+ (?:\[[^\]]*\] )?\S+ \[[^\]]+\] \"(?P<method>[A-Z]{3,7}) (?P<path>\S+) HTTP/[\d.]+\" "
    r"(?P<status>\d{3}) \S+(?: \"(?P<referer>[^\"]*)\" \"(?P<ua>[^\"]*)\")?")
_BARE_REQUEST = re.compile(r"\"?(?P<method>GET|HEAD|POST|PUT|PATCH|DELETE) (?P<path>/v[12]/\S*) HTTP/[\d.]+\"? "
                           r"(?P<status>\d{3})\b")
# distribution's logfmt access line: one pattern per field (logfmt fields come in any order)
_LOGFMT = {
    "method": re.compile(r"http\.request\.method=\"?(?P<method>[A-Z]+)"),
    "path": re.compile(r"http\.request\.uri=\"(?P<path>[^\"]+)\""),
    "status": re.compile(r"http\.response\.status=(?P<status>\d{3})"),
    "ua": re.compile(r"http\.request\.useragent=\"(?P<ua>[^\"]*)\""),
}
_COMMAND = re.compile(
    r"^\s*(?:\[?[\w.\-]+@[\w.\-]+[^\]$#]*\]?\s*[$#]|[$#>%])?\s*(?:sudo\s+(?:-\S+\s+)*)?"
    r"(?P<prog>docker(?:-compose)?|podman|skopeo|buildah|nerdctl|ctr|crictl|kubectl|k3s|curl|wget|systemctl|"
    r"journalctl|helm|service|dockerd)\s+(?P<args>.*)$")
_FILE_MARK = re.compile(
    r"^\s*(?:[$#]\s*(?:sudo\s+)?(?:cat|less|more|vi|vim|nano|tail|head)\s+(?P<f1>/\S+)|#\s+(?P<f2>/\S+)\s*$|"
    r"==> (?P<f3>/\S+) <==|(?P<f4>/(?:etc|usr/lib|lib)/\S+?):\s*$)")
_PROXY_SET = re.compile(r"(?i)\b(?P<kind>https?|no)_proxy\s*=\s*[\"']?(?P<val>[^\s\"']*)")
_INSECURE_FLAG = re.compile(r"--insecure-registr(?:y|ies)[ =]\"?(?P<reg>[^\s\"']+)")
_NEW_RECORD = re.compile(r"^(?:\s*$|[A-Z][a-z]{2} [ \d]\d \d\d:|\d{4}-\d\d-\d\d|time=|level=|[A-Z]{4}\[\d|\S+ - \S+ \[|"
                         r"Error|error|Get |Head |Post |Put |Patch |[$#] |\w+:\s|[\w.\-]+@)")
_TRUNC_END = re.compile(r"(?:…|\.\.\.)\s*$")

_LAYER_BY_RULE = {"DD201": "tcp", "DD202": "tcp", "DD212": "dns", "DD203": "tls", "DD204": "tls", "DD205": "tls",
                  "DD206": "tls", "DD209": "tls", "DD210": "http", "DD207": "http", "DD211": "http",
                  "DD208": "auth", "DD110": "proxy"}


def _layer(pattern: Pattern) -> str:
    if pattern.layer:
        return pattern.layer
    if pattern.rule in _LAYER_BY_RULE:
        return _LAYER_BY_RULE[pattern.rule]
    return {"DD1": "config", "DD3": "host", "DD4": "registry", "DD5": "engine"}.get(pattern.rule[:3], "")


def match_line(line: str, line_no: int, kb: KnowledgeBase, line_end: int = 0, gated: bool | None = None) -> list[Hit]:
    """The pattern hits in one logical line (after the suppressions among them)."""
    if not line.strip():
        return []
    found = [(p, m) for p in kb.candidates(line, gated) if (m := p.regex.search(line))]
    if not found:
        return []
    suppressed = {s for p, _ in found for s in p.suppresses}
    params = extract_params(line)
    out = []
    for p, m in found:
        if p.id in suppressed:
            continue
        gp = _group_params(m)
        merged = {**params, **{k: v for k, v in gp.items() if k not in ("host", "port") or k not in params}}
        out.append(Hit(p, line_no, line, merged, line_end or line_no))
    return out


def _truncated_hits(line: str, line_no: int, kb: KnowledgeBase) -> list[Hit]:
    """Hits for a line cut short inside a known phrase: the line ends with the first 12+ characters of it."""
    body = _TRUNC_END.sub("", line).rstrip()
    low = body.lower()
    if len(low) < PHRASE_HEAD:
        return []
    found: list[Pattern] = []
    for p in kb.patterns:
        for ph in p.phrases:
            start = low.rfind(ph[:PHRASE_HEAD], max(0, len(low) - len(ph)))
            if start < 0 or not ph.startswith(low[start:]) or len(low) - start >= len(ph):
                continue
            found.append(p)
            break
    if len({p.rule for p in found}) != 1:
        return []  # nothing, or too little left to tell the rules apart ("x509: certif…")
    params = extract_params(body)
    return [Hit(p, line_no, line, dict(params), line_no, truncated=True) for p in found]


def _access(ev: Event, line: str) -> bool:
    if "HTTP/" not in line and "http.request.method=" not in line:
        return False
    m = _COMBINED.search(line) if '" ' in line else None
    if m:
        ev.method, ev.path, ev.status = m.group("method"), m.group("path"), int(m.group("status"))
        ev.client = m.group("ua") or None
        # nginx and most proxies log an empty referer as "-", distribution as ""
        ev.setting = {"via": "proxy" if m.group("referer") == "-" else "registry" if m.group("referer") == "" else ""}
        return True
    mm = _LOGFMT["method"].search(line) if "http.request.method=" in line else None
    mu = _LOGFMT["path"].search(line) if mm else None
    ms = _LOGFMT["status"].search(line) if mu else None
    if mm and mu and ms:
        ev.method, ev.path, ev.status = mm.group("method"), mu.group("path"), int(ms.group("status"))
        ua = _LOGFMT["ua"].search(line)
        ev.client = ua.group("ua") if ua else None
        ev.setting = {"via": "registry"}
        return True
    m = _BARE_REQUEST.search(line)
    if m:
        ev.method, ev.path, ev.status = m.group("method"), m.group("path"), int(m.group("status"))
        ev.setting = {"via": ""}
        return True
    return False


def normal_request(ev: Event) -> bool:
    """A request that succeeded, or a HEAD that found nothing (how a push asks whether a blob
    exists): ordinary traffic, whatever error words the line carries."""
    return ev.status is not None and (ev.status < 400 or (ev.method == "HEAD" and ev.status == 404))


def access_hits(ev: Event, kb: KnowledgeBase) -> list[Hit]:
    """What the access-log rules say about one request."""
    if ev.status is None or ev.path is None:
        return []
    path = ev.path.split("?", 1)[0]
    via = ev.setting.get("via", "")
    out = []
    for a in kb.access:
        if ev.status not in a.status or (a.methods and ev.method not in a.methods):
            continue
        if (a.via == "proxy" and via != "proxy") or (a.via == "registry" and via == "proxy"):
            continue
        if a.path and not a.path_regex.search(path):
            continue
        out.append(Hit(_access_pattern(a), ev.line_no, ev.text, {"method": ev.method, "path": path,
                                                                  "status": ev.status}, ev.line_end))
    return out


_ACCESS_PATTERNS: dict[str, Pattern] = {}


def _access_pattern(a: AccessRule) -> Pattern:
    p = _ACCESS_PATTERNS.get(a.id)
    if p is None:
        p = Pattern(id=a.id, rule=a.rule, also=a.also, weight=a.weight, source="", seen=a.seen,
                    examples=a.examples, note=a.note, layer="http")
        _ACCESS_PATTERNS[a.id] = p
    return p


@dataclass(frozen=True)
class _Syntax:
    """One way a pasted configuration line sets something: `rx` has the groups `key` (or `var`) and `val`;
    `anywhere`: it may sit anywhere in the line, not only at its start; `hints`: the line must hold one of
    these before `rx` is tried."""

    kind: str
    rx: re.Pattern[str]
    anywhere: bool = False
    hints: tuple[str, ...] = ()


# Tried in this order; the first that matches names the line's syntax.
_CONFIG_SYNTAXES = (
    _Syntax("env", re.compile(
        r"^\s*(?:export\s+)?(?P<var>DOCKER_OPTS|OPTIONS|INSECURE_REGISTRY|ADD_REGISTRY|DOCKER_OPTIONS|"
        r"other_args|DOCKERD_OPTS|(?i:https?_proxy|no_proxy))\s*=\s*(?P<val>.*)$")),
    _Syntax("unit", re.compile(r"^\s*(?P<key>ExecStart|EnvironmentFile|Environment)\s*=\s*(?P<val>.*)$")),
    _Syntax("json", re.compile(
        r"\"(?P<key>insecure-registries|registry-mirrors|hosts|proxies|http-proxy|https-proxy|"
        r"no-proxy|data-root)\"\s*:\s*(?P<val>.*)$"), anywhere=True,
        hints=("insecure-registries", "registry-mirrors", '"hosts"', '"proxies"', '-proxy"', '"data-root"')),
    _Syntax("registries.conf", re.compile(
        r"^\s*(?P<key>location|insecure|prefix|registries|mirror)\s*=\s*(?P<val>.*)$")),
)


def _config(ev: Event, line: str, current_file: str | None) -> bool:
    s = line.strip()
    if "=" not in s and '":' not in s:
        return False
    for syn in _CONFIG_SYNTAXES:
        if syn.hints and not any(h in s for h in syn.hints):
            continue
        m = syn.rx.search(s) if syn.anywhere else syn.rx.match(s)
        if m is None:
            continue
        kind = syn.kind
        key = m.groupdict().get("var") or m.group("key")
        val = m.group("val").strip()
        ev.setting = {"syntax": kind, "key": key, "value": val[:300]}
        regs = _INSECURE_FLAG.findall(val)
        if kind == "json" and key == "insecure-registries":
            regs = re.findall(r"\"([^\"]+)\"", val)
        if regs:
            ev.setting["insecure"] = regs
        for pm in _PROXY_SET.finditer(s):
            if pm.group("kind").lower() == "no":
                ev.setting["no_proxy"] = [x for x in pm.group("val").split(",") if x]
            elif pm.group("val"):
                ev.setting["proxy"] = pm.group("val")
        ev.file = current_file
        return True
    return False


def _classify(ev: Event, current_file: str | None) -> None:
    line = ev.text
    jm = _JOURNAL.match(line)
    body = line
    if jm:
        ev.kind, ev.unit = "journal", jm.group("unit")
        body = jm.group("msg")
    if _access(ev, body):
        ev.kind = "access"
        ev.layer = "http"
        return
    cm = _COMMAND.match(body)
    if cm and not jm:
        ev.kind, ev.client = "command", cm.group("prog")
        ev.setting = {"args": cm.group("args")[:500]}
        regs = _INSECURE_FLAG.findall(cm.group("args"))
        if regs:
            ev.setting["insecure"] = regs
        return
    if _config(ev, body, current_file):
        ev.kind = "config"
        ev.layer = "config"
        return
    if ev.hits:
        if ev.kind != "journal":
            ev.kind = "error"


def _joinable(a: str, b: str) -> list[str]:
    """Ways a line and the next may be one line broken apart (most likely first)."""
    if not a.strip() or not b.strip() or _NEW_RECORD.match(b):
        return []
    out = []
    if a.count('"') % 2 == 1 and not b[:1].isspace():  # a break inside a quoted URL or message
        out.append(a + b)
    if len(a) >= 40:
        if a[-1:].isspace() or b[:1].isspace():
            out.append(a.rstrip() + " " + b.lstrip())
        else:
            out.extend([a + b, a + " " + b])
    return list(dict.fromkeys(out))


def _bounded(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE // 2] + " … " + line[-MAX_LINE // 2:]


_VOLATILE = re.compile(r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d[T ][\d:.,]+\S*) \S+ [^:]{1,80}: |"
                       r"time=\"[^\"]*\"|\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[.\d]*(?:Z|[+-]\d\d:?\d\d)?")


def iter_events(lines: Iterable[str], kb: KnowledgeBase | None = None, *, mend: bool = True,
                start: int = 1) -> Iterator[Event]:
    """Events for the lines (already cleaned), in order. With mend, broken-up lines are joined where
    only the joined text matches, and a last or "…"-cut line is recognised from a phrase's start.
    A line that repeats (the same message with another timestamp) is matched once."""
    kb = kb or load_kb()
    buf = [_bounded(x) for x in lines]
    n = len(buf)
    hot, marked = kb.scan(buf)
    if n <= FULL_MEND_LINES:
        todo = list(range(n))  # a paste: every line (a keyword may be broken across two of them)
    else:  # a long log: the lines that say something, and their neighbours
        near = hot | marked | {n - 1}
        todo = sorted({j for i in near for j in (i - 1, i, i + 1) if 0 <= j < n})
    current_file: str | None = None
    memo: dict[str, tuple[list[Hit], Event | None]] = {}
    k = 0
    skip_to = -1
    while k < len(todo):
        i = todo[k]
        k += 1
        if i <= skip_to:
            continue
        line = buf[i]
        no = start + i
        fm = _FILE_MARK.match(line)
        if fm:
            current_file = next(g for g in fm.groups() if g)
        key = None
        seen = memo.get(line) if i in hot else None  # an exact repeat, else the same message at another time
        if i in hot and seen is None:
            key = _VOLATILE.sub("", line)
            seen = memo.get(key)
        proto = seen[1] if seen is not None else None
        if seen is not None and proto is not None:  # the same message again: the same event
            hits0 = seen[0]
            ev = Event(proto.kind, no, no, line, [Hit(h.pattern, no, line, h.params, no, h.truncated) for h in hits0],
                       proto.layer, proto.host, proto.port, unit=proto.unit)
            yield ev
            continue
        if seen is not None:
            hits = [Hit(h.pattern, no, line, h.params, no, h.truncated) for h in seen[0]]
        else:
            hits = match_line(line, no, kb, gated=i in hot)
        end = no
        step = 1
        if mend and not hits and i + 1 < n:
            for joined in _joinable(line, buf[i + 1]):
                if not kb.passes_gate(joined):
                    continue
                got = match_line(joined, no, kb, no + 1, gated=True)
                broken_url = line.count('"') % 2 == 1 and "://" in line and joined == line + buf[i + 1]
                if got and (broken_url or not match_line(buf[i + 1], no + 1, kb, gated=(i + 1) in hot)):
                    hits, line, end, step = got, joined, no + 1, 2
                    break
        if mend and not hits and (i + step == n or i in marked or _TRUNC_END.search(line)):
            hits = _truncated_hits(line, no, kb)
        ev = Event("text", no, end, line, hits)
        _classify(ev, current_file)
        if ev.kind == "access":
            ev.hits = ([] if normal_request(ev) else ev.hits) + access_hits(ev, kb)
        if ev.hits:
            ev.layer = ev.layer or _layer(ev.hits[0].pattern)
            p = ev.hits[0].params
            ev.host, ev.port, ev.file = p.get("host"), p.get("port"), ev.file or p.get("file")
        elif ev.kind in ("command", "config"):
            p = extract_params(line)
            ev.host, ev.port = p.get("host"), p.get("port")
        if key is not None and seen is None and step == 1 and len(memo) < 10000:
            memo[key] = memo[line] = (ev.hits, ev if ev.kind in ("error", "journal") and ev.hits and not ev.setting
                                      else None)
        yield ev
        if step == 2:
            skip_to = i + 1


def parse(text: str, kb: KnowledgeBase | None = None) -> list[Event]:
    """Every event of a pasted text that says something (hits, access lines, config, commands)."""
    return [ev for ev in iter_events(clean(text).split("\n"), kb)
            if ev.hits or ev.kind in ("access", "config", "command")]


def iter_hits(lines: Iterable[str], kb: KnowledgeBase | None = None) -> Iterator[Hit]:
    """The hits in the lines, one line at a time (line numbers from 1); what the offline rules read."""
    kb = kb or load_kb()
    for ev in iter_events((clean(x) for x in lines), kb, mend=False):
        yield from ev.hits


def recent_hits(lines: list[str], per_key: int = 3) -> list[Hit]:
    """Hits in a long log, in file order, keeping only the last `per_key` of each (pattern, host,
    port): memory stays bounded when a journal repeats one error 50 000 times. One pass of the
    parser over the whole log (its scan skips the lines without a keyword)."""
    kb = load_kb()
    counts: dict[tuple[str, Any, Any], int] = {}
    out: list[Hit] = []
    for hit in reversed(list(iter_hits(lines, kb))):
        key = (hit.pattern.id, hit.params.get("host"), hit.params.get("port"))
        if counts.get(key, 0) >= per_key:
            continue
        counts[key] = counts.get(key, 0) + 1
        out.append(hit)
    out.reverse()
    return out


def scan_lines(lines: Iterable[str], rule_id: str, addr: HostPort | None = None
               ) -> Iterator[tuple[int, str, Hit]]:
    """(line number, line, hit) for lines whose primary rule is rule_id and that name addr."""
    yield from filter_hits(iter_hits(lines), rule_id, addr)


def filter_hits(hits: Iterable[Hit], rule_id: str, addr: HostPort | None = None
                ) -> Iterator[tuple[int, str, Hit]]:
    """The hits (from iter_hits, possibly cached) whose primary rule is rule_id and that name addr."""
    want_host = addr.host.lower() if addr else None
    want_port = addr.port if addr else None
    for hit in hits:
        p = hit.pattern
        if p.rule != rule_id and rule_id not in p.equally:
            continue
        if want_host is not None:
            if hit.params.get("host") != want_host:
                continue
            if want_port is not None and hit.params.get("port") not in (None, want_port):
                continue
        yield hit.line_no, hit.line, hit

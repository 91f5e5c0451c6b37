"""The packet filter rules that decide whether a TCP port is reachable: nftables (JSON and text),
iptables (`iptables-save` and `iptables -L`), ufw, and docker's own DNAT rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.model import Provenance
from dockerdoctor.safetext import isdigits, loads_json
from dockerdoctor.sources.base import Source

T = TypeVar("T")

# --------------------------------------------------------------------------- packet filters


@dataclass(frozen=True)
class FilterRule:
    backend: str  # nftables | iptables | ufw
    chain: str
    text: str
    verdict: str  # drop | reject | accept
    reject_with: str  # "", "tcp reset", "icmp host-prohibited", ...
    ports: tuple[tuple[int, int], ...]  # dport ranges; () = any port
    proto: str | None  # tcp | udp | None (any)
    source_limited: bool
    line: int | None = None
    source: str = ""
    family: str = ""  # nft table family
    table: str = ""
    is_policy: bool = False
    handle: int | None = None  # nft rule handle
    position: int | None = None  # 1-based position in its iptables chain

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text or self.text, line if line is not None else self.line)

    def matches(self, port: int, proto: str = "tcp") -> bool:
        if self.proto and self.proto != proto:
            return False
        if not self.ports:
            return True
        return any(a <= port <= b for a, b in self.ports)


@dataclass
class PacketFilter:
    rules: list[FilterRule]  # input-path rules, in evaluation order per backend
    sources: list[str]
    ufw_active: bool | None = None
    docker_chains: bool = False  # docker's DOCKER / DOCKER-USER chains are present
    firewalld_table: bool = False
    docker_dnat_ports: set[int] | None = None  # host ports docker DNATs to containers (None: not known)

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(", ".join(self.sources), text, line)


def _nft_ports(expr: dict[str, Any]) -> tuple[tuple[int, int], ...] | None:
    right = expr.get("right")
    if isinstance(right, int):
        return ((right, right),)
    if isinstance(right, dict):
        if "range" in right:
            a, b = right["range"]
            return ((int(a), int(b)),)
        if "set" in right:
            out = []
            for x in right["set"]:
                if isinstance(x, int):
                    out.append((x, x))
                elif isinstance(x, dict) and "range" in x:
                    out.append((int(x["range"][0]), int(x["range"][1])))
            return tuple(out)
    if isinstance(right, list):
        return tuple((int(x), int(x)) for x in right if isinstance(x, int))
    return None


def parse_nft_json(text: str, source: str) -> tuple[list[FilterRule], bool, bool]:
    """Rules in input-hook chains (and the chains they jump to) that drop or reject TCP ports."""
    try:
        data = loads_json(text)
    except ValueError:
        return [], False, False
    items = data.get("nftables", []) if isinstance(data, dict) else []
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    docker = firewalld = False
    for it in items:
        if "chain" in it:
            c = it["chain"]
            key = (c.get("family"), c.get("table"), c.get("name"))
            chains[key] = c
            if c.get("name") in ("DOCKER", "DOCKER-USER"):
                docker = True
        elif "rule" in it:
            r = it["rule"]
            rules.setdefault((r.get("family"), r.get("table"), r.get("chain")), []).append(r)
        elif "table" in it and it["table"].get("name") == "firewalld":
            firewalld = True
    out: list[FilterRule] = []

    def walk(key: tuple[str, str, str], depth: int) -> None:
        if depth > 8:
            return
        for r in rules.get(key, []):
            exprs = r.get("expr") or []
            ports: tuple[tuple[int, int], ...] = ()
            proto = None
            verdict = None
            reject_with = ""
            src_limited = iif_lo = False
            jump = None
            for e in exprs:
                if "match" in e:
                    m = e["match"]
                    left = m.get("left") or {}
                    payload = left.get("payload") if isinstance(left, dict) else None
                    meta = left.get("meta") if isinstance(left, dict) else None
                    if payload and payload.get("field") == "dport":
                        proto = payload.get("protocol")
                        ports = _nft_ports(m) or ()
                    elif payload and payload.get("field") in ("saddr",):
                        src_limited = True
                    elif meta and meta.get("key") in ("iifname", "iif") and m.get("right") in ("lo",):
                        iif_lo = True
                    elif meta and meta.get("key") == "l4proto":
                        proto = m.get("right") if isinstance(m.get("right"), str) else proto
                    elif payload and payload.get("field") == "protocol" and payload.get("protocol") in ("ip", "ip6"):
                        proto = m.get("right") if isinstance(m.get("right"), str) else proto
                    else:
                        # ct state, saddr sets, marks, an interface other than lo, xt matches...: this rule is
                        # not about every new connection, so it decides nothing for "any client"
                        src_limited = True
                elif "drop" in e:
                    verdict = "drop"
                elif "reject" in e:
                    verdict = "reject"
                    rj = e["reject"] or {}
                    reject_with = " ".join(str(x) for x in (rj.get("type"), rj.get("expr")) if x)
                elif "accept" in e:
                    verdict = "accept"
                elif "jump" in e or "goto" in e:
                    jump = (e.get("jump") or e.get("goto") or {}).get("target")
                elif not any(k in e for k in ("counter", "log", "comment", "limit")):
                    src_limited = True
            if iif_lo:
                continue
            if jump:
                if not src_limited:
                    walk((key[0], key[1], jump), depth + 1)
                continue
            if verdict is None:
                continue
            text = f"{key[0]} {key[1]} {key[2]}: handle {r.get('handle')} " + (r.get("comment") or "")
            out.append(FilterRule("nftables", key[2], text.strip(), verdict, reject_with, ports, proto, src_limited,
                                  None, source, key[0], key[1], handle=r.get("handle")))

    for key, c in chains.items():
        if c.get("hook") == "input" and c.get("type", "filter") == "filter":
            walk(key, 0)
            pol = c.get("policy")
            if pol in ("drop",):
                out.append(FilterRule("nftables", key[2], f"{key[0]} {key[1]} {key[2]}: policy {pol}", pol, "", (),
                                      None, False, None, source, key[0], key[1], is_policy=True))
    return out, docker, firewalld


_IPT_RULE = re.compile(r"^-A\s+(\S+)\s+(.*)$")


def parse_iptables_save(text: str, source: str) -> tuple[list[FilterRule], bool]:
    table = ""
    out: list[FilterRule] = []
    chains_input: set[str] = {"INPUT"}
    policies: dict[str, str] = {}
    docker = False
    lines = text.splitlines()
    # chains INPUT jumps to (INPUT_direct, IN_public, ufw-before-input, ...)
    for line in lines:
        m = _IPT_RULE.match(line.strip())
        if m:
            j = re.search(r"-[jg]\s+(\S+)", m.group(2))
            if j and m.group(1) in chains_input and j.group(1) not in ("ACCEPT", "DROP", "REJECT", "RETURN", "LOG"):
                chains_input.add(j.group(1))
    position: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("*"):
            table = s[1:]
            position = {}
            continue
        if s.startswith(":"):
            parts = s[1:].split()
            if parts and parts[0] in ("DOCKER", "DOCKER-USER"):
                docker = True
            if table == "filter" and len(parts) >= 2 and parts[0] == "INPUT":
                policies["INPUT"] = parts[1]
            continue
        m = _IPT_RULE.match(s)
        if not m or table != "filter":
            continue
        position[m.group(1)] = position.get(m.group(1), 0) + 1
        if m.group(1) not in chains_input:
            continue
        args = m.group(2)
        j = re.search(r"-j\s+(DROP|REJECT|ACCEPT)\b", args)
        if not j:
            continue
        if re.search(r"-i\s+lo\b", args) or "--ctstate" in args or "--state" in args:
            continue
        dports = re.search(r"--dports?\s+(\S+)", args)
        ports: list[tuple[int, int]] = []
        if dports:
            for part in dports.group(1).split(","):
                a, _, b = part.partition(":")
                if isdigits(a):
                    ports.append((int(a), int(b or a)))
        pm = re.search(r"-p\s+(\w+)", args)
        rw = re.search(r"--reject-with\s+(\S+)", args)
        out.append(FilterRule("iptables", m.group(1), s, j.group(1).lower(),
                              rw.group(1) if rw else ("icmp-port-unreachable" if j.group(1) == "REJECT" else ""),
                              tuple(ports), pm.group(1) if pm else None, bool(re.search(r"(^|\s)-s\s", args)),
                              i, source, position=position[m.group(1)]))
    if policies.get("INPUT") == "DROP":
        out.append(FilterRule("iptables", "INPUT", ":INPUT DROP", "drop", "", (), None, False, None, source,
                              is_policy=True))
    return out, docker


def parse_ufw_status(text: str, source: str) -> tuple[list[FilterRule], bool | None]:
    active = None
    out: list[FilterRule] = []
    default_deny = False
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.lower().startswith("status:"):
            active = s.split(":", 1)[1].strip().lower() == "active"
        elif s.lower().startswith("default:") and "deny (incoming)" in s.lower():
            default_deny = True
        m = re.match(r"^(?:\[\s*\d+\]\s*)?(\d+(?::\d+)?(?:,\d+)*)(?:/(tcp|udp))?(?:\s+\(v6\))?\s+(DENY|REJECT)\s+IN\s+"
                     r"(\S+)", s)
        if m:
            ports = []
            for part in m.group(1).split(","):
                a, _, b = part.partition(":")
                ports.append((int(a), int(b or a)))
            out.append(FilterRule("ufw", "ufw-user-input", s, m.group(3).lower(), "", tuple(ports), m.group(2),
                                  m.group(4).lower() not in ("anywhere", "anywhere(v6)"), i, source))
    if active and default_deny:
        out.append(FilterRule("ufw", "ufw", "Default: deny (incoming)", "drop", "", (), None, False, None, source,
                              is_policy=True))
    return out, active


def _first_parsed(src: Source, fallbacks: tuple[tuple[str, Callable[[str, str], T]], ...],
                  blank_is_empty: bool = False) -> tuple[T, str, str] | None:
    """The first command of `fallbacks` that has output: what it parses to, its source and its text."""
    for key, parse in fallbacks:
        text = src.command(key)
        if text and not (blank_is_empty and not text.strip()):
            return parse(text, src.command_source(key)), src.command_source(key), text
    return None


@fact()
def packet_filter(facts: Facts) -> PacketFilter:
    src = facts.source
    rules: list[FilterRule] = []
    sources: list[str] = []
    docker = fw_table = False
    ufw_active = None
    nft = _first_parsed(src, (("nft_ruleset", parse_nft_json), ("nft_ruleset_text", parse_nft_text),
                              ("nft_ruleset_firewalld", parse_nft_text)))
    nft_text = ipt_text = ""
    if nft is not None:
        (r, docker, fw_table), where, nft_text = nft
        rules += r
        sources.append(where)
    have_nft = any(x.backend == "nftables" for x in rules)
    ipt = _first_parsed(src, (("iptables_save", parse_iptables_save), ("iptables_list", parse_iptables_list)),
                        blank_is_empty=True)
    if ipt is not None:
        (r, d), where, ipt_text = ipt
        # iptables-nft shows the same rules nft shows; keep both only when nft said nothing
        if not have_nft:
            rules += r
        docker = docker or d
        sources.append(where)
    ufw = src.command("ufw_status")
    if ufw:
        r, ufw_active = parse_ufw_status(ufw, src.command_source("ufw_status"))
        if ufw_active:
            rules += r
        sources.append(src.command_source("ufw_status"))
    if not sources:
        raise FactUnavailable("no packet filter rules are readable here (nft -j list ruleset, iptables-save, ufw)")
    dnat: set[int] | None = None
    if ipt_text.lstrip().startswith(("#", "*")):
        dnat = docker_dnat_ports(ipt_text, "iptables-save")
    elif nft_text:
        dnat = docker_dnat_ports(nft_text, "nft-json" if nft_text.lstrip().startswith("{") else "nft-text")
    return PacketFilter(rules, sources, ufw_active, docker, fw_table, dnat)


# --------------------------------------------------------------------------- text formats (sos)

_NFT_TABLE = re.compile(r"^\s*table\s+(\w+)\s+(\S+)\s*\{")
_NFT_CHAIN = re.compile(r"^\s*chain\s+(\S+)\s*\{")
# Linear on any line: the policy is searched for on its own (a lazy `.*?` before `\s*$` was quadratic on a
# hook line followed by 400,000 spaces).
_NFT_HOOK = re.compile(r"type\s+(\w+)\s+hook\s+(\w+)")
_NFT_POLICY = re.compile(r"\bpolicy\s+(\w+)\s*;?\s*$")


def _ports_from_words(spec: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in re.split(r"[,\s{}]+", spec):
        a, _, b = part.partition("-")
        if isdigits(a) and (not b or isdigits(b)):
            out.append((int(a), int(b or a)))
    return tuple(out)


def parse_nft_text(text: str, source: str) -> tuple[list[FilterRule], bool, bool]:
    """`nft list ruleset` (as sos stores it): the rules of input-hook chains, in order."""
    chains: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    hooks: dict[tuple[str, str, str], str | None] = {}
    docker = firewalld = False
    table: tuple[str, str] | None = None
    chain: str | None = None
    for i, raw in enumerate(text.splitlines(), 1):
        m = _NFT_TABLE.match(raw)
        if m:
            table, chain = (m.group(1), m.group(2)), None
            if m.group(2) == "firewalld":
                firewalld = True
            continue
        m = _NFT_CHAIN.match(raw)
        if m and table:
            chain = m.group(1)
            chains[(table[0], table[1], chain)] = []
            if chain in ("DOCKER", "DOCKER-USER"):
                docker = True
            continue
        line = raw.strip()
        if not line or line == "}" or table is None or chain is None:
            continue
        h = _NFT_HOOK.match(line) if line.startswith("type ") else None
        if h:
            if h.group(1) == "filter" and h.group(2) == "input":
                pol = _NFT_POLICY.search(line.rstrip())
                hooks[(table[0], table[1], chain)] = pol.group(1) if pol else None
            continue
        chains[(table[0], table[1], chain)].append((i, line))
    out: list[FilterRule] = []

    def walk(key: tuple[str, str, str], depth: int) -> None:
        if depth > 8:
            return
        for lineno, line in chains.get(key, []):
            body = line.split("#", 1)[0].strip()
            handle = re.search(r"#\s*handle\s+(\d+)", line)
            words = body.split()
            if not words:
                continue
            verdict = None
            reject_with = ""
            jump = None
            m = re.search(r"\b(accept|drop)\s*$", body) or re.search(r"\b(reject)(?:\s+with\s+(.+))?$", body)
            if m:
                verdict = m.group(1)
                if verdict == "reject" and m.lastindex and m.lastindex >= 2 and m.group(2):
                    reject_with = m.group(2).strip()
            jm = re.search(r"\b(jump|goto)\s+(\S+)\s*$", body)
            if jm:
                jump = jm.group(2)
            cond = re.sub(r"\b(counter(\s+packets\s+\d+\s+bytes\s+\d+)?|log(\s+prefix\s+\"[^\"]*\")?|"
                          r"accept|drop|reject(\s+with\s+.+)?|(jump|goto)\s+\S+)\s*", " ", body).strip()
            if re.match(r"^(iif|iifname)\s+\"?lo\"?$", cond):
                continue
            ports: tuple[tuple[int, int], ...] = ()
            proto = None
            limited = False
            pm = re.match(r"^(tcp|udp|th)\s+dport\s+(\{[^}]*\}|\S+)$", cond)
            if pm:
                proto = None if pm.group(1) == "th" else pm.group(1)
                ports = _ports_from_words(pm.group(2))
            elif re.match(r"^(ip protocol|meta l4proto|ip6 nexthdr)\s+(\S+)$", cond):
                proto = cond.split()[-1]
            elif cond:
                limited = True  # ct state, saddr, marks, other interfaces: not "every new connection"
            if jump:
                if not limited:
                    walk((key[0], key[1], jump), depth + 1)
                continue
            if verdict is None:
                continue
            out.append(FilterRule("nftables", key[2], f"table {key[0]} {key[1]} chain {key[2]}: {body}", verdict,
                                  reject_with, ports, proto, limited, lineno, source, key[0], key[1],
                                  handle=int(handle.group(1)) if handle else None))

    for key, policy in hooks.items():
        walk(key, 0)
        if policy == "drop":
            out.append(FilterRule("nftables", key[2], f"table {key[0]} {key[1]} chain {key[2]}: policy drop", "drop",
                                  "", (), None, False, None, source, key[0], key[1], is_policy=True))
    return out, docker, firewalld


_IPT_CHAIN = re.compile(r"^Chain\s+(\S+)(?:\s+\(policy\s+(\w+))?")


def parse_iptables_list(text: str, source: str) -> tuple[list[FilterRule], bool]:
    """`iptables -vnxL` / `iptables -t filter -nvL`: the INPUT chain and the chains it jumps to."""
    chains: dict[str, list[tuple[int, list[str]]]] = {}
    policy: dict[str, str] = {}
    cur = None
    docker = False
    for i, line in enumerate(text.splitlines(), 1):
        m = _IPT_CHAIN.match(line)
        if m:
            cur = m.group(1)
            chains[cur] = []
            if m.group(2):
                policy[cur] = m.group(2)
            if cur in ("DOCKER", "DOCKER-USER"):
                docker = True
            continue
        cols = line.split()
        if cur is None or not cols or cols[0] == "pkts" or not isdigits(cols[0]):
            continue
        chains[cur].append((i, cols))
    out: list[FilterRule] = []

    def walk(chain: str, depth: int) -> None:
        if depth > 8:
            return
        for pos, (lineno, cols) in enumerate(chains.get(chain, []), 1):
            if len(cols) < 9:
                continue
            target, prot, _opt, iface, _out, src = cols[2], cols[3], cols[4], cols[5], cols[6], cols[7]
            extra = " ".join(cols[9:])
            if iface == "lo":
                continue
            limited = src not in ("0.0.0.0/0", "::/0") or iface not in ("*",)
            st = re.search(r"state\s+(\S+)", extra)
            if st and "NEW" not in st.group(1):
                limited = True
            extra_wo = re.sub(r"(ct)?state\s+\S+|reject-with\s+\S+|/\*.{0,512}?\*/|(tcp|udp)\s+dpts?:\S+|"
                              r"multiport\s+dports\s+\S+", "", extra).strip()
            if extra_wo:
                limited = True  # other matches (mark, limit, recent...): not every new connection
            ports: list[tuple[int, int]] = []
            d = re.search(r"dpts?:(\d+)(?::(\d+))?", extra)
            if d:
                ports.append((int(d.group(1)), int(d.group(2) or d.group(1))))
            mp = re.search(r"multiport\s+dports\s+(\S+)", extra)
            if mp:
                for part in mp.group(1).split(","):
                    a, _, b = part.partition(":")
                    if isdigits(a):
                        ports.append((int(a), int(b or a)))
            proto = {"6": "tcp", "17": "udp", "1": "icmp", "all": None, "0": None}.get(prot, prot)
            if target not in ("ACCEPT", "DROP", "REJECT", "RETURN", "LOG"):
                if not limited and target in chains:
                    walk(target, depth + 1)
                continue
            if target in ("RETURN", "LOG"):
                continue
            rw = re.search(r"reject-with\s+(\S+)", extra)
            out.append(FilterRule("iptables", chain, f"Chain {chain} rule {pos}: {' '.join(cols[2:])}",
                                  target.lower(), rw.group(1) if rw else ("icmp-port-unreachable"
                                                                         if target == "REJECT" else ""),
                                  tuple(ports), proto, limited, lineno, source, position=pos))

    walk("INPUT", 0)
    if policy.get("INPUT") == "DROP":
        out.append(FilterRule("iptables", "INPUT", "Chain INPUT (policy DROP)", "drop", "", (), None, False, None,
                              source, is_policy=True))
    return out, docker


# Applied to one rule line at a time, without a leading `.*`: `^-A DOCKER.*--dport (\d+).*-j DNAT` over a
# 4 MB line of `--dport 1` backtracked for minutes.
_DPORT_IPT = re.compile(r"--dport (\d+)\b")
_DPORT_NFT = re.compile(r"dport (\d+) ")


def _dnat_port(line: str, dport: re.Pattern[str], verdict: str, first: bool = False) -> int | None:
    """The port of one DNAT rule line: the last (iptables) or first (nft) one before the DNAT verdict."""
    end = line.rfind(verdict)
    if end < 0:
        return None
    if first:
        m = dport.search(line, 0, end)
    else:
        found = list(dport.finditer(line, 0, end))
        m = found[-1] if found else None
    return int(m.group(1)) if m else None


def docker_dnat_ports(text: str, kind: str) -> set[int]:
    """Host ports with a DNAT rule in docker's DOCKER chain (iptables-save, nft text or nft JSON)."""
    if kind == "iptables-save":
        found = (_dnat_port(line, _DPORT_IPT, "-j DNAT") for line in text.splitlines()
                 if line.startswith("-A DOCKER") and line[9:10] in ("", " ", "\t"))
        return {p for p in found if p is not None}
    if kind == "nft-text":
        out: set[int] = set()
        in_docker = False
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("chain "):
                in_docker = s.split()[1] == "DOCKER"
            elif in_docker:
                p = _dnat_port(s, _DPORT_NFT, "dnat to", first=True)
                if p is not None:
                    out.add(p)
        return out
    try:
        data = loads_json(text)
    except ValueError:
        return set()
    out = set()
    for it in data.get("nftables", []) if isinstance(data, dict) else []:
        r = it.get("rule")
        if not r or r.get("chain") != "DOCKER":
            continue
        exprs = r.get("expr") or []
        if not any("dnat" in e for e in exprs) and not any(
                isinstance(e.get("xt"), dict) and e["xt"].get("name") == "DNAT" for e in exprs):
            continue
        for e in exprs:
            m = e.get("match") if isinstance(e, dict) else None
            left = (m or {}).get("left") or {}
            if m and isinstance(left, dict) and (left.get("payload") or {}).get("field") == "dport":
                for a, b in _nft_ports(m) or ():
                    out.update(range(a, b + 1))
    return out

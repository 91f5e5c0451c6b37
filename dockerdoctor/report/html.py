"""The fleet report as one self-contained HTML page (`dockerdoctor report --format html`).

Everything is inline: the style, the script that sorts the tables, no font, image or script from
anywhere else, and a Content-Security-Policy that forbids the page any fetch, so it can be mailed,
attached to a ticket or opened from a file share. Every value from the inputs is HTML-escaped.

Tables: hosts, root causes (per rule), findings, one table per registry (the hosts checked against
it, with what each has for that registry), and the hosts that could not be checked. A click on a
column header (a button, so the keyboard works too) sorts by it; a second click reverses; the
header carries `aria-sort`. Numbers and severities sort by value, names in natural order (host9
before host10).
"""

from __future__ import annotations

import html
from typing import Any

SEV_RANK = {"unchecked": 4, "error": 3, "warning": 2, "info": 1, "ok": 0}

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; " \
      "form-action 'none'"

STYLE = """
:root { --fg:#1d2430; --muted:#5b6576; --line:#d8dde6; --bg:#f6f7f9; --err:#b42318; --warn:#b54708;
        --info:#175cd3; --ok:#067647; --unk:#6941c6; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 16px 24px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
h3 { font-size: 14px; margin: 18px 0 6px; font-family: ui-monospace, monospace; }
main { padding: 0 24px 32px; max-width: 1400px; }
.meta { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 12px; }
.card { background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 22px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f5; font-weight: 600; white-space: nowrap; }
th button { all: unset; cursor: pointer; }
th button:focus-visible { outline: 2px solid var(--info); }
th button::after { content: " \\2195"; color: var(--muted); }
th[aria-sort=ascending] button::after { content: " \\25B2"; color: var(--fg); }
th[aria-sort=descending] button::after { content: " \\25BC"; color: var(--fg); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .id { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
.sev { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; color: #fff; }
.sev-error { background: var(--err); } .sev-warning { background: var(--warn); } .sev-info { background: var(--info); }
.sev-ok { background: var(--ok); } .sev-unchecked { background: var(--unk); }
.empty { color: var(--muted); font-style: italic; }
"""

SCRIPT = """
(function () {
  function key(cell, type) {
    var v = cell.hasAttribute('data-sort') ? cell.getAttribute('data-sort') : cell.textContent.trim();
    return type === 'number' ? parseFloat(v) || 0 : v;
  }
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});
  function sortBy(table, th, index) {
    var dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir);
    var type = th.getAttribute('data-type') || 'text';
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], type), y = key(b.cells[index], type);
      var c = type === 'number' ? x - y : collator.compare(x, y);
      if (c === 0) c = collator.compare(a.cells[0].textContent, b.cells[0].textContent);
      return dir === 'ascending' ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, index) {
      var b = th.querySelector('button');
      if (b) b.addEventListener('click', function () { sortBy(table, th, index); });
    });
  });
})();
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _sev(label: str) -> str:
    return f'<span class="sev sev-{_e(label)}">{_e(label)}</span>'


def _cell(content: str, sort: Any = None, cls: str = "") -> str:
    attrs = (f' data-sort="{_e(sort)}"' if sort is not None else "") + (f' class="{cls}"' if cls else "")
    return f"<td{attrs}>{content}</td>"


def _table(table_id: str, columns: list[tuple[str, str]], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="empty" id="{_e(table_id)}">{_e(empty)}</p>'
    head = "".join(f'<th scope="col" data-type="{t}"><button type="button">{_e(name)}</button></th>'
                   for name, t in columns)
    body = "\n".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return (f'<table class="sortable" id="{_e(table_id)}"><thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table>")


def _list(names: list[str], limit: int = 30) -> str:
    shown = ", ".join(_e(n) for n in names[:limit])
    return shown + (f", … (+{len(names) - limit})" if len(names) > limit else "")


def render(fleet: dict[str, Any]) -> str:
    s = fleet["summary"]
    hosts_rows = [[
        _cell(f'<span class="id">{_e(h["name"])}</span>', h["name"]),
        _cell(_sev(h["status"]), SEV_RANK.get(h["status"], 0)),
        *((_cell("—", -1, "num"), _cell("—", -1, "num")) if h["status"] == "unchecked" else
          (_cell(str(h["errors"]), h["errors"], "num"), _cell(str(h["warnings"]), h["warnings"], "num"))),
        _cell(" ".join(f'<span class="id">{_e(i)}</span>' for i in h["findings"]) or "—", " ".join(h["findings"])),
        _cell(_list(h["registries"]), " ".join(h["registries"])),
        _cell(_e(h["reason"] or h["target"]), h["reason"] or h["target"]),
    ] for h in fleet["hosts"]]
    cause_rows = [[
        _cell(f'<span class="id">{_e(c["id"])}</span>', c["id"]),
        _cell(_e(c["title"])),
        _cell(_sev(c["severity"]), SEV_RANK.get(c["severity"], 0)),
        _cell(str(c["hosts"]), c["hosts"], "num"),
        _cell(str(c["findings"]), c["findings"], "num"),
        _cell(_list(c["host_names"])),
    ] for c in fleet["root_causes"]]
    finding_rows = [[
        _cell(f'<span class="id">{_e(f["id"])}</span>', f["id"]),
        _cell(_sev(f["severity"]), SEV_RANK.get(f["severity"], 0)),
        _cell(_e(f["title"])),
        _cell(f'<code>{_e(f["registry"])}</code>' if f["registry"] else "—", f["registry"] or ""),
        _cell(str(f["count"]), f["count"], "num"),
        _cell(_list(f["hosts"])),
    ] for f in fleet["findings"]]
    unchecked_rows = [[
        _cell(f'<span class="id">{_e(u["name"])}</span>', u["name"]),
        _cell(_e(u["reason"])),
        _cell(f'<code>{_e(u["source"])}</code>', u["source"]),
    ] for u in fleet["unchecked"]]
    registry_sections = []
    for i, r in enumerate(fleet["registries"]):
        rows = [[
            _cell(f'<span class="id">{_e(h["name"])}</span>', h["name"]),
            _cell(_sev(h["status"]), SEV_RANK.get(h["status"], 0)),
            _cell(" ".join(f'<span class="id">{_e(x)}</span>' for x in h["findings"]) or "—", " ".join(h["findings"])),
        ] for h in r["hosts"]]
        registry_sections.append(
            f'<h3 id="registry-{i}-title">{_e(r["registry"])}</h3>'
            f'<p class="meta">{len(r["hosts_checked"])} hosts checked; errors on {len(r["hosts_with_errors"])}, '
            f'warnings on {len(r["hosts_with_warnings"])}</p>'
            + _table(f"registry-{i}", [("Host", "text"), ("Status", "number"), ("Findings", "text")], rows,
                     "No host names this registry."))
    cards = "".join(f'<div class="card" id="card-{k}"><b>{v}</b>{_e(label)}</div>' for k, v, label in (
        ("hosts", s["hosts"], "hosts"), ("ok", s["hosts_ok"], "ok"), ("errors", s["hosts_with_errors"], "with errors"),
        ("warnings", s["hosts_with_warnings"], "with warnings"), ("unchecked", s["hosts_unchecked"], "not checked"),
        ("causes", s["root_causes"], "root causes")))
    ignored = ""
    if fleet["ignored_inputs"]:
        items = "".join(f"<li><code>{_e(i['source'])}</code>: {_e(i['reason'])}</li>"
                        for i in fleet["ignored_inputs"][:200])
        ignored = f"<h2>Ignored inputs</h2><ul>{items}</ul>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dockerdoctor fleet report: {s['hosts']} hosts</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>dockerdoctor fleet report</h1>
<div class="meta">dockerdoctor {_e(fleet['tool']['version'])} · {s['findings']} findings on {s['hosts']} hosts.
Click a column header to sort.</div>
<div class="cards">{cards}</div>
</header>
<main>
<h2>Hosts</h2>
{_table("hosts", [("Host", "text"), ("Status", "number"), ("Errors", "number"), ("Warnings", "number"),
                  ("Findings", "text"), ("Registries", "text"), ("Target or reason", "text")], hosts_rows,
        "No host reports were given.")}
<h2>Root causes (per rule)</h2>
{_table("causes", [("Rule", "text"), ("Title", "text"), ("Severity", "number"), ("Hosts", "number"),
                   ("Findings", "number"), ("Host names", "text")], cause_rows, "No findings on any host.")}
<h2>Findings</h2>
{_table("findings", [("Rule", "text"), ("Severity", "number"), ("Title", "text"), ("Registry", "text"),
                     ("Hosts", "number"), ("Host names", "text")], finding_rows, "No findings on any host.")}
<h2>Per registry</h2>
{"".join(registry_sections) or '<p class="empty">No registry was checked.</p>'}
<h2>Could not be checked</h2>
{_table("unchecked", [("Host", "text"), ("Reason", "text"), ("Input", "text")], unchecked_rows,
        "Every host was checked.")}
{ignored}
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""

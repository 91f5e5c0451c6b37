"""The HTML fleet report in a real headless chromium: what a person sees (the rows, a sort by clicking a
column header), that the page fetches nothing, and a screenshot kept in the test artefacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cdp import Browser
from fleetkit import ARTIFACTS, dd, need
from test_fleet_report import HEALTHY, SYSCONFIG, UNTRUSTED, check_json


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    need("chromium")
    d = tmp_path_factory.mktemp("fleet-html")
    reports = d / "reports"
    check_json(SYSCONFIG, reports / "a.json", host="host10")  # 3 errors, 1 warning
    check_json(UNTRUSTED, reports / "b.json", host="host9")  # 2 errors
    check_json(HEALTHY, reports / "c.json", host="host2")  # none
    check_json(UNTRUSTED, reports / "d.json", host="<b>bold</b> host")  # 2 errors, a name that is markup
    (reports / "e.json").write_text(json.dumps({"unreachable": True, "msg": "ssh: connect to host: timed out"}))
    html = d / "fleet.html"
    r = dd("report", str(reports), "--format", "html", "-o", str(html))
    assert r.returncode == 1 and html.stat().st_size > 0, r.stderr
    with Browser(width=1280, height=1000) as b:
        b.open(html.as_uri())
        yield b, html


def rows(b: Browser, table: str) -> list[list[str]]:
    """The cells of every visible row as the person reads them (innerText, so hidden text does not count)."""
    return b.js(f"""Array.from(document.querySelectorAll('#{table} tbody tr'))
        .filter(r => r.getBoundingClientRect().height > 0)
        .map(r => Array.from(r.cells).map(c => c.innerText.trim()))""")


def test_rows_a_person_sees(page) -> None:  # type: ignore[no-untyped-def]
    b, _ = page
    assert b.js("document.title") == "dockerdoctor fleet report: 5 hosts"
    hosts = rows(b, "hosts")
    assert [r[0] for r in hosts] == ["<b>bold</b> host", "e", "host2", "host9", "host10"]  # markup shown as text
    by_name = {r[0]: r for r in hosts}
    assert by_name["host10"][1:4] == ["error", "3", "1"]
    assert by_name["host2"][1:4] == ["ok", "0", "0"]
    assert by_name["e"][1] == "unchecked" and "timed out" in by_name["e"][6]
    causes = rows(b, "causes")
    assert causes[0][:4] == ["DD101", "The daemon does not trust the registry", "error", "3"]
    assert [r[0] for r in rows(b, "unchecked")] == ["e"]
    assert "10.0.0.5:5000" in b.js("document.getElementById('registry-0-title').innerText")
    # the <b> in a host name stayed text: no element came of it
    assert b.js("Array.from(document.querySelectorAll('b')).filter(e => e.textContent === 'bold').length") == 0


def test_clicking_a_header_sorts_and_a_second_click_reverses(page) -> None:  # type: ignore[no-untyped-def]
    b, _ = page
    b.click("#hosts thead th:nth-child(3) button")  # Errors
    assert b.js("document.querySelector('#hosts thead th:nth-child(3)').getAttribute('aria-sort')") == "ascending"
    asc = rows(b, "hosts")
    assert [r[0] for r in asc][:2] == ["e", "host2"]  # unchecked (no count) first, then 0 errors
    assert [r[0] for r in asc][-1] == "host10"
    b.click("#hosts thead th:nth-child(3) button")
    assert b.js("document.querySelector('#hosts thead th:nth-child(3)').getAttribute('aria-sort')") == "descending"
    assert [r[0] for r in rows(b, "hosts")][0] == "host10"
    b.click("#hosts thead th:nth-child(1) button")  # Host: natural order, host2 < host9 < host10
    names = [r[0] for r in rows(b, "hosts")]
    assert names.index("host2") < names.index("host9") < names.index("host10")
    b.click("#causes thead th:nth-child(4) button")  # Hosts column of the root causes, ascending
    counts = [int(r[3]) for r in rows(b, "causes")]
    assert counts == sorted(counts) and len(counts) == 3


def test_the_page_fetched_nothing_and_a_screenshot_is_kept(page) -> None:  # type: ignore[no-untyped-def]
    b, html = page
    assert b.requests() == [html.as_uri()], "the page loaded something besides itself"
    b.click("#hosts thead th:nth-child(3) button")  # show the sorted state in the picture
    shot = b.screenshot(ARTIFACTS / "fleet-report.png")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert 1200 <= width <= 1280 and height >= 1000  # the page, less a scrollbar
    (ARTIFACTS / "fleet-report.html").write_bytes(Path(html).read_bytes())

"""The report's section 8: HTTPS beside plain HTTP through the same nginx (loadtest/bench/bench_https.py).

As in report_sections_1_3.py: a function of the Results returning the report's paragraphs. Three tables:
/plaintext over kept-alive connections, new connections (TLS handshakes), and a page's static files
over HTTP/2 against HTTP/1.1. A cell whose step failed says n/a and why.
"""

import math

from report_analysis import (
    HTTPS_SESSIONS,
    NO_TLS_LABEL,
    PAGE_PROTOCOLS,
    SERVERS,
    by_label,
    cpu_per_request,
    failures,
    handshakes,
    https_plaintext,
    med,
    missing_reason,
    page_loads,
    page_ratio,
)
from report_markdown import (
    Results,
    generator_note,
    heading,
    machine_note,
    missing_note,
    na,
    para,
    rps_cell,
    spread,
    table,
    text,
)

SECTION = "https"


def https_section(results: Results) -> list[str]:
    data, missing = results.data, results.missing
    md = [heading("https")]
    measured = any(r["section"] == SECTION for r in results.runs) or "https_handshakes" in data
    if not measured:
        return [*md, na(missing_reason(missing, SECTION) or "not measured") + "\n"]
    md += [para("https"), *plaintext_part(results), *handshakes_part(results), *page_part(results)]
    md.extend(missing_note(missing, SECTION))
    return md


def us(value: float) -> str:
    return f"{value:.0f}" if not math.isnan(value) else "n/a"


def plaintext_part(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    md = [para("https_plaintext", connections=results.data["settings"]["connections"])]
    pairs = https_plaintext(runs)
    grouped = by_label(runs, SECTION)
    rows = []
    for server in SERVERS:
        p = pairs.get(server)
        if p is None:
            http_reason = missing_reason(missing, SECTION, f"{server} http")
            https_reason = missing_reason(missing, SECTION, f"{server} https")
            http_runs, https_runs = grouped.get(f"{server} http", []), grouped.get(f"{server} https", [])
            reason = "; ".join(dict.fromkeys(x for x in (http_reason, https_reason) if x)) or "not measured"
            rows.append([server, rps_cell(http_runs, http_reason), rps_cell(https_runs, https_reason), na(reason)])
            rows[-1] += ["-"] * 4
            continue
        both = p["http_runs"] + p["https_runs"]
        rows.append(
            [
                server,
                rps_cell(p["http_runs"], ""),
                rps_cell(p["https_runs"], ""),
                f"{p['ratio']:.2f} ("
                + ", ".join(f"{x:.2f}" + ("*" if i in p["uneven_rounds"] else "") for i, x in enumerate(p["ratios"]))
                + ")",
                f"{med(r['p99_ms'] for r in p['http_runs']):.1f} / {med(r['p99_ms'] for r in p['https_runs']):.1f}",
                f"{us(p['cost']['http']['nginx'])} / {us(p['cost']['https']['nginx'])}",
                generator_note(both),
                str(failures(both)),
            ]
        )
    header = ["server", "plain HTTP req/s", "HTTPS req/s", "https/http (per round)", "p99 ms http / https"]
    md += [table([*header, "nginx us/req http / https", "gen cores (limit?)", "errors"], rows), ""]
    for server, p in pairs.items():
        cost = p["cost"]
        md.append(
            text(
                "https_plaintext_cost",
                server=server,
                ratio=p["ratio"],
                https_us=cost["https"]["nginx"],
                http_us=cost["http"]["nginx"],
            )
        )
    return [*md, ""] if pairs else md


def handshakes_part(results: Results) -> list[str]:
    data, missing = results.data, results.missing
    settings = data["settings"]
    measured = handshakes(data)
    md = [
        para(
            "https_handshakes",
            clients=settings.get("handshake_clients", "?"),
            seconds=settings.get("handshake_s", "?"),
        )
    ]
    expected = [f"TLS {tls} {session}" for tls in settings.get("tls_versions", ()) for session in HTTPS_SESSIONS]
    rows = []
    for label in dict.fromkeys([*expected, *measured]):
        h = measured.get(label)
        if h is None:
            reason = missing_reason(missing, SECTION, label) or "not measured"
            rows.append([label, na(reason), *["-"] * 5])
            continue
        resumed = f"{h['resumed']:,} of {h['handshakes']:,}"
        rows.append(
            [
                label,
                f"{h['rate']:,.0f} ({spread(h['rates'])})",
                resumed if h["as_labelled"] else f"**{resumed}**",
                us(h["nginx_us"]),
                f"{1e6 / h['nginx_us']:,.0f}" if h["nginx_us"] > 0 else "n/a",
                f"{h['generator_cores']:.2f}" if not math.isnan(h["generator_cores"]) else "n/a",
                f"{h['machine_cores']:.2f}" if not math.isnan(h["machine_cores"]) else "n/a",
            ]
        )
    no_tls = by_label(results.runs, SECTION).get(NO_TLS_LABEL, [])
    if no_tls:
        nginx_us = cpu_per_request(no_tls, "nginx-gunicorn", "gunicorn")["nginx"]
        per_core = f"{1e6 / nginx_us:,.0f}" if nginx_us > 0 else "n/a"
        cells = [rps_cell(no_tls, ""), "-", us(nginx_us), per_core, generator_note(no_tls), machine_note(no_tls)]
        rows.append([NO_TLS_LABEL, *cells])
    elif missing_reason(missing, SECTION, NO_TLS_LABEL):
        rows.append([NO_TLS_LABEL, na(missing_reason(missing, SECTION, NO_TLS_LABEL)), *["-"] * 5])
    header = ["connection", "per second", "resumed", "nginx us each", "per nginx core /s", "gen cores", "machine cores"]
    md += [table(header, rows), ""]
    kex = "; ".join(dict.fromkeys(f"TLS {h['runs'][0]['tls']} {h['group']}, {h['cipher']}" for h in measured.values()))
    md.append(para("https_handshakes_kex", kex=kex or "n/a"))
    not_resumed = [label for label, h in measured.items() if not h["as_labelled"]]
    if not_resumed:
        md.append(para("https_not_resumed", rows=", ".join(not_resumed)))
    return md


def page_part(results: Results) -> list[str]:
    data, missing = results.data, results.missing
    page = data.get("https_page")
    if page is None:
        reason = missing_reason(missing, SECTION, "page HTTP/2") or missing_reason(missing, SECTION)
        return [na(reason or "the page's files were not measured") + "\n"]
    sets, h1, browsers = page["sets"], page["h1_connections"], page.get("browsers", 1)
    md = [
        para(
            "https_page",
            files=page["files"],
            kb=page["bytes"] / 1000,
            sets=sets,
            h1=h1,
            browsers=browsers,
            per_browser=sets // browsers,
            per_connection=sets // (browsers * h1),
        )
    ]
    loads = page_loads(data)
    rows = []
    for protocol in PAGE_PROTOCOLS:
        p = loads.get(protocol)
        if p is None:
            reason = missing_reason(missing, SECTION, f"page {protocol}") or "not measured"
            rows.append([protocol, "-", na(reason), *["-"] * 5])
            continue
        rows.append(
            [
                protocol,
                f"{p['connections']} x {p['streams']}",
                f"{p['rps']:,.0f} ({spread(p['rps_runs'])})",
                f"{p['set_ms']:.2f}",
                us(p["nginx_us"]),
                f"{p['header_bytes']:.0f}",
                f"{p['generator_cores']:.2f}" if not math.isnan(p["generator_cores"]) else "n/a",
                f"{p['failed']} of {p['requests']:,}",
            ]
        )
    header = ["protocol", "connections x streams", "req/s", "ms per set", "nginx us/req", "response header bytes/req"]
    md += [table([*header, "gen cores", "failed"], rows), ""]
    ratio = page_ratio(data)
    if ratio is not None:
        ratios = ", ".join(f"{x:.2f}" for x in ratio["ratios"])
        md.append(para("https_page_ratio", ratio=ratio["ratio"], ratios=ratios))
    return md

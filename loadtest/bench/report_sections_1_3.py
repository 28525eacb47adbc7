"""The report's top (the machine, what failed, the method) and sections 1-3: proxy tax, servers, peers.

Each section is a function of the Results (raw.json's data and where the report goes) returning the
report's paragraphs; report.py puts them in order and joins them with newlines. The prose is in
report_template.md, the figures and verdicts come from report_analysis.py, the charts from report_charts.py.
"""

import math

import report_charts as charts
from bench_targets import SEPARATE_CORES
from report_analysis import (
    OURS,
    PEER_MATCH,
    PROXY_PATHS,
    PROXY_TAX_TARGET,
    SERVERS,
    UNEVEN_SHARE,
    app_on_one_core,
    by_label,
    concurrent_summary,
    failures,
    faster,
    lopsided_runs,
    med,
    missing_labels,
    missing_reason,
    nginx_alone_us,
    nginx_budget_us,
    peer_matched,
    proxy_costs,
    proxy_tax,
    uneven,
)
from report_markdown import (
    Results,
    describe_missing,
    figure,
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
    verdict,
    worker_shares,
)


# --- the top: the machine, what failed, the method -------------------------------------------
def introduction(results: Results) -> list[str]:
    data, machine, settings = results.data, results.data["machine"], results.data["settings"]
    md = [
        para("title"),
        para(
            "intro",
            profile=data["profile"],
            date=machine["date"],
            minutes=data["elapsed_s"] / 60,
            cores=machine["cores"],
            cpu=machine["cpu"],
            memory_gib=machine["memory_gib"],
            kernel=machine["kernel"],
            versions=", ".join(f"{k} `{v}`" for k, v in data["versions"].items()),
        ),
    ]
    if results.missing:
        md.append(para("incomplete", count=len(results.missing)))
        md.extend(f"- {describe_missing(m)}" for m in results.missing)
        md.append("")
    method = {key: settings[key] for key in ("connections", "duration_s", "warmup_s", "rounds")}
    md.append(para("method", **method))
    return md


# --- 1. the proxy tax ------------------------------------------------------------------------
def proxy_tax_section(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    cores = results.data.get("separate_cores", {})
    tax = proxy_tax(runs, cores.get("app", ""))
    md = [heading("proxy_tax"), para("proxy_tax", target=PROXY_TAX_TARGET)]
    rows = []
    for name, t in tax.items():
        direct_runs, nginx_runs = t["direct_runs"], t["nginx_runs"]
        rows.append(
            [
                name,
                f"{t['direct']:,.0f} ({spread([r['rps'] for r in direct_runs])})",
                f"{t['nginx']:,.0f} ({spread([r['rps'] for r in nginx_runs])})",
                f"{t['ratio']:.3f} ("
                + ", ".join(f"{x:.2f}" + ("*" if i in t["uneven_rounds"] else "") for i, x in enumerate(t["ratios"]))
                + ")",
                f"{med(r['p99_ms'] for r in direct_runs):.1f} / {med(r['p99_ms'] for r in nginx_runs):.1f}",
                f"{worker_shares(direct_runs)} / {worker_shares(nginx_runs)}",
                generator_note(direct_runs + nginx_runs),
                machine_note(direct_runs + nginx_runs),
                str(failures(direct_runs + nginx_runs)),
                verdict(t["met"]) if t["shipped"] else not_judged(name),
            ]
        )
    tax_runs = by_label(runs, "proxy-tax")
    for name, (direct_label, via_label, _, _) in PROXY_PATHS.items():
        # A path with no pair of rounds: its cells say why, where a step recorded a reason.
        direct_reason = missing_reason(missing, "proxy-tax", direct_label)
        via_reason = missing_reason(missing, "proxy-tax", via_label)
        if name in tax or not (direct_reason or via_reason):
            continue
        direct_runs, via_runs = tax_runs.get(direct_label, []), tax_runs.get(via_label, [])
        reason = "; ".join(dict.fromkeys(x for x in (direct_reason, via_reason) if x))
        rows.append(
            [
                name,
                rps_cell(direct_runs, direct_reason),
                rps_cell(via_runs, via_reason),
                na(reason),
                *["-"] * 5,
                "n/a" if name in SERVERS else not_judged(name),
            ]
        )
    header = ["path", "direct req/s", "through nginx req/s", "ratio (per round)", "p99 ms direct / nginx"]
    header += ["busiest worker share direct / nginx", "gen cores (limit?)", "machine cores", "errors", "target"]
    md += [
        table(header, rows),
        "",
        *missing_note(missing, "proxy-tax"),
        proxy_tax_explanation(tax, runs, cores),
    ]
    if tax:
        md.append(figure("proxy tax", charts.chart_proxy_tax(tax, results.out_dir)))
    return md


def not_judged(name: str) -> str:
    """The target column of a path the target does not judge: TCP is the transport across hosts."""
    if name.endswith(SEPARATE_CORES):
        return "(placement)"
    return "(across hosts)" if name.endswith(", TCP") else "(not shipped)"


def proxy_tax_explanation(tax: dict, runs: list[dict], cores: dict[str, str]) -> str:
    """Where the CPU went on each path, for each shipped path below the target why, and what the same pairs
    did on separate cores (`cores`: the cores the app server and nginx had there, bench_sections.py)."""
    md = [para("proxy_tax_cpu")]
    costs = proxy_costs(tax)
    rows: list[list[str]] = []
    for name, t in tax.items():
        # The TCP paths share their direct runs with the shipped ones: one row for those.
        for how, label in (("direct", t["direct_label"]), ("nginx", f"{name}, through nginx")):
            if how == "direct" and any(row[0] == label for row in rows):
                continue
            cost = costs[name][how]
            rows.append(
                [
                    label,
                    f"{cost['generator']:.0f}",
                    f"{cost['nginx']:.0f}" if how == "nginx" else "-",
                    f"{cost['app']:.0f}",
                    f"{cost['other']:.0f}",
                    f"{cost['total']:.0f}",
                ]
            )
    md += [table(["path", "generator", "nginx", "app server", "other", "total"], rows), ""]
    # On separate cores with one core for the app server, where connections landed does not count.
    one_core = app_on_one_core(cores.get("app", ""))
    lopsided = [r for r in lopsided_runs(runs, "proxy-tax") if not (one_core and SEPARATE_CORES in r["label"])]
    if lopsided:
        which = ", ".join(r["label"] + " r" + str(r["round"]) for r in lopsided)
        md.append(para("proxy_tax_lopsided", count=len(lopsided), runs=which, share=UNEVEN_SHARE))
    alone_us = nginx_alone_us(runs)
    for server in SERVERS:
        t = tax.get(server)
        if t is None:
            continue
        if t["met"]:
            md.append(text("proxy_tax_met", server=server, ratio=t["ratio"]))
            continue
        direct, via = costs[server]["direct"], costs[server]["nginx"]
        tcp = tax.get(f"{server}, TCP")
        over_tcp = (
            text(
                "proxy_tax_tcp",
                server=server,
                ratio=tcp["ratio"],
                tcp_nginx_us=costs[f"{server}, TCP"]["nginx"]["nginx"],
                nginx_us=via["nginx"],
            )
            if tcp
            else text("proxy_tax_no_tcp")
        )
        below = {"nginx_us": via["nginx"], "app_us": via["app"], "direct_app_us": direct["app"]}
        budget = nginx_budget_us(direct["total"])
        md.append(
            text(
                "proxy_tax_below",
                server=server,
                ratio=t["ratio"],
                target=PROXY_TAX_TARGET,
                budget_us=budget,
                alone_us=alone_us,
                tcp=over_tcp,
                **below,
            )
        )
    peer = tax.get("peer: gunicorn defaults")
    if peer:
        ours = tax.get("gunicorn")
        through = text("proxy_tax_naive_ours", theirs=peer["nginx"], ours=ours["nginx"]) if ours else ""
        md.append(text("proxy_tax_naive", ratio=peer["ratio"], direct=peer["direct"], ours=through))
    apart = [s for s in SERVERS if f"{s}{SEPARATE_CORES}" in tax]
    if apart:
        kept = [
            text(
                "proxy_tax_apart_server",
                server=s,
                ratio=tax[f"{s}{SEPARATE_CORES}"]["ratio"],
                rate=tax[f"{s}{SEPARATE_CORES}"]["nginx"],
                shared=tax[s]["nginx"] if s in tax else math.nan,
                nginx_us=cost["nginx"]["nginx"],
                app_us=cost["nginx"]["app"],
                direct_app_us=cost["direct"]["app"],
            )
            for s in apart
            for cost in [costs[f"{s}{SEPARATE_CORES}"]]
        ]
        md.append(
            "\n"
            + text("proxy_tax_apart", servers="; ".join(kept), app=cores.get("app", "?"), nginx=cores.get("nginx", "?"))
            + (" " + text("proxy_tax_apart_one_core") if one_core else "")
        )
    elif any(not tax[s]["met"] for s in SERVERS if s in tax):
        md.append("\n" + text("proxy_tax_fix"))
    return "\n".join(md)


# --- 2. gunicorn vs uWSGI --------------------------------------------------------------------
def servers_section(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    md = [heading("servers"), para("servers")]
    grouped = by_label(runs, "servers")
    labels = [*grouped, *missing_labels(missing, "servers")]
    endpoints = list(dict.fromkeys(label.split(" ", 1)[1] for label in labels))
    rows = []
    for endpoint in endpoints:
        g = grouped.get(f"gunicorn {endpoint}", [])
        u = grouped.get(f"uwsgi {endpoint}", [])
        if not g or not u:
            g_reason = missing_reason(missing, "servers", f"gunicorn {endpoint}")
            u_reason = missing_reason(missing, "servers", f"uwsgi {endpoint}")
            rows.append([endpoint, rps_cell(g, g_reason), rps_cell(u, u_reason), "n/a", "-", "n/a", "-", "-"])
            continue
        g_rps, u_rps = [r["rps"] for r in g], [r["rps"] for r in u]
        rows.append(
            [
                endpoint,
                f"{med(g_rps):,.0f} ({spread(g_rps)})",
                f"{med(u_rps):,.0f} ({spread(u_rps)})",
                f"{med(u_rps) / med(g_rps):.2f}",
                f"{med(r['p99_ms'] for r in g):.1f} / {med(r['p99_ms'] for r in u):.1f}",
                faster(g_rps, u_rps),
                f"{generator_note(g)} / {generator_note(u)}",
                str(failures(g + u)),
            ]
        )
    header = ["endpoint", "gunicorn req/s", "uWSGI req/s", "uWSGI / gunicorn", "p99 ms g / u", "faster"]
    md += [table([*header, "gen cores g / u", "errors"], rows), *missing_note(missing, "servers")]
    if grouped:
        md.append(figure("gunicorn vs uWSGI", charts.chart_servers(grouped, endpoints, results.out_dir)))
    return md


# --- 3. the peers ----------------------------------------------------------------------------
def peers_section(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    md = [heading("peers"), para("peers", match=PEER_MATCH)]
    grouped = by_label(runs, "peers")
    paced = by_label(runs, "peers-paced")
    labels = [*grouped, *missing_labels(missing, "peers")]
    stacks = list(dict.fromkeys(label.rsplit(" ", 1)[0] for label in labels))
    endpoints = list(dict.fromkeys(label.rsplit(" ", 1)[1] for label in labels))
    paced_labels = [*paced, *missing_labels(missing, "peers-paced")]
    rates = {label.rsplit("@", 1)[0].rsplit(" ", 1)[1]: label.rsplit("@", 1)[1] for label in paced_labels}
    rows = []
    behind: list[str] = []
    for endpoint in endpoints:
        rate = rates.get(endpoint, "")
        our_runs = grouped.get(f"{OURS} {endpoint}", [])
        our_paced = paced.get(f"{OURS} {endpoint}@{rate}", [])
        for stack in stacks:
            rs = grouped.get(f"{stack} {endpoint}", [])
            steady = paced.get(f"{stack} {endpoint}@{rate}", [])
            peak_reason = missing_reason(missing, "peers", f"{stack} {endpoint}")
            steady_reason = missing_reason(missing, "peers-paced", f"{stack} {endpoint}@{rate}")
            if not rs and not peak_reason:
                continue
            compare = ""
            if stack.startswith("peer") and our_runs and our_paced and steady:
                r_ratio = med(r["rps"] for r in our_runs) / med(r["rps"] for r in rs)
                ours_p99, theirs_p99 = med(r["p99_ms"] for r in our_paced), med(r["p99_ms"] for r in steady)
                ok = peer_matched(r_ratio, ours_p99, theirs_p99)
                if not ok:
                    behind.append(f"{stack} on {endpoint}")
                outcome = "matches or beats" if ok else "**behind**"
                compare = f"peak x{r_ratio:.2f}, steady p99 {ours_p99:.1f} vs {theirs_p99:.1f} ms: {outcome}"
            no_steady = na(steady_reason) if steady_reason else ""
            rows.append(
                [
                    endpoint,
                    stack,
                    rps_cell(rs, peak_reason),
                    f"{med(r['p99_ms'] for r in rs):.1f}" if rs else "-",
                    f"{med(r['rps'] for r in steady):,.0f}" if steady else no_steady,
                    f"{med(r['p99_ms'] for r in steady):.1f}" if steady else "-" if no_steady else "",
                    worker_shares(steady),
                    compare,
                    generator_note(rs + steady),
                    str(failures(rs + steady)),
                ]
            )
    header = ["endpoint", "stack", "peak req/s", "p99 ms at peak", "steady req/s", "p99 ms steady"]
    header += ["busiest worker share, steady", "ours (gunicorn) vs this peer", "gen cores (limit?)", "errors"]
    md.append(table(header, rows))
    lopsided = [run for rs in paced.values() for run in rs if run["label"].startswith(OURS) and uneven(run)]
    if behind:
        md.append("\n" + text("peers_behind", cases=", ".join(behind)))
    if behind and lopsided:
        md.append(text("peers_lopsided", count=len(lopsided), share=UNEVEN_SHARE))
    md.extend(missing_note(missing, "peers", "peers-paced"))
    md.extend(streams_part(results.data.get("concurrent_streams"), missing))
    if grouped:
        md.append(figure("peers", charts.chart_peers(grouped, stacks, endpoints, results.out_dir)))
    return md


def streams_part(streams: dict | None, missing: list[dict]) -> list[str]:
    """Section 3's streams under concurrency: do they start at once, and does /plaintext wait meanwhile?"""
    failed = [name for name in missing_labels(missing, "streams") if name not in (streams or {}).get("results", {})]
    if not streams:
        return []
    md = ["\n" + para("streams", clients=streams["clients"], path=streams["path"])]
    rows = []
    for name, result in streams["results"].items():
        s = concurrent_summary(result)
        rows.append(
            [
                name,
                f"{s['streams_ok']}/{s['streams']}",
                f"{s['first_p50_ms']:.0f}",
                f"{s['first_max_ms']:.0f}",
                f"{s['probe_count']}",
                f"{s['probe_p50_ms']:.1f}",
                f"{s['probe_max_ms']:.0f}",
            ]
        )
    for name in failed:
        rows.append([name, na(missing_reason(missing, "streams", name)), *["-"] * 5])
    header = ["stack", "streams answered", "first chunk p50 ms", "first chunk max ms", "/plaintext during"]
    md.append(table([*header, "/plaintext p50 ms", "/plaintext max ms"], rows))
    all_streamed = not failed and all(
        concurrent_summary(r)["streams_ok"] == streams["clients"] for r in streams["results"].values()
    )
    md.append("\n" + para("streams_why", outcome=text("streams_all" if all_streamed else "streams_some")))
    md.extend(missing_note(missing, "streams"))
    return md

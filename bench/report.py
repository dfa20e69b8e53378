"""The bench's one table (each figure next to its issue #16 target) and its plot (a plain SVG:
no plotting library, so the bench needs nothing beyond the moto venv)."""

import math
import re
from html import escape

LOCAL, DEPLOYED = "folder+SQLite", "S3+DynamoDB"


def aws_target(case, sizes):
    """Issue #16's AWS-call target of a case on the deployed configuration, as (limit, label)."""
    if case == "getAvailableTemplates cold":
        return 3, "<= 3 (1 List + 1 file + 1 capacity)"
    if case == "getAvailableTemplates warm":
        return 2, "<= 2"
    if case.startswith("requestMachines") or case == "requestReturnMachines":
        return 4, "<= 4"
    match = re.match(r"getRequestStatus (\d+)x(\d+) (first|later) poll", case)
    if not match:
        return None, "-"
    requests, machines = int(match[1]), int(match[2])
    if requests * machines <= 50:
        return 4, "<= 4"
    if (requests, machines) == (20, 50):
        return 5, "<= 5"
    # No figure in the issue: its rules (1 Describe per 1,000 machines, 1 read per 100 ids,
    # 1 batched write per 100 changed records on the first poll).
    total = requests * machines
    limit = math.ceil(total / 1000) + math.ceil(total / 100) * (2 if match[3] == "first" else 1)
    return limit, f"<= {limit} (rules)"


def verdict(value, limit):
    if value is None or limit is None:
        return ""
    return "ok" if value <= limit else "MISS"


def timed_out(figure):
    return f"no answer in {figure['timed_out_after_s']:g} s" if figure and "timed_out_after_s" in figure else None


def p50(figure):
    return figure.get("wall_ms_p50") if figure else None


def wall(figure):
    if timed_out(figure):
        return timed_out(figure)
    return f"{figure['wall_ms_p50']:.0f} / {figure['wall_ms_p99']:.0f} (n={figure['n']})" if figure else "-"


def calls_text(figure):
    if timed_out(figure):
        return timed_out(figure)
    if not figure or figure["aws_calls"] is None:
        return "-"
    spread = "" if figure["aws_calls_max"] == figure["aws_calls"] else f" (max {figure['aws_calls_max']})"
    return f"{figure['aws_calls']}{spread}"


def call_rows(configs, sizes):
    local, deployed = configs.get("local", {}), configs.get("deployed", {})
    rows = []
    for case in dict.fromkeys([*local, *deployed]):
        if case.startswith("throughput"):
            continue
        a, b = local.get(case), deployed.get(case)
        limit, label = aws_target(case, sizes)
        met = "MISS" if timed_out(b) else verdict(b and b.get("aws_calls"), limit)
        rows.append(["1 AWS calls", case, calls_text(a), calls_text(b), label, met])
        ratio = p50(b) / p50(a) if p50(a) and p50(b) else None
        rows.append(["2 wall ms p50/p99", case, wall(a), wall(b), "deployed <= 2x local",
                     "" if ratio is None else f"{verdict(ratio, 2)} {ratio:.1f}x"])
    return rows


def function_rows(functions):
    rows = []
    for name, f in functions.items():
        if "error" in f:
            rows.append(["3 lambda", f"{name} ({f['event']})", "", f"failed: {f['error'][:80]}", "-", "MISS"])
            continue
        rows += [
            ["3 lambda", f"{name}: binary MB", "", f["binary_mb"], "<= 15", verdict(f["binary_mb"], 15)],
            ["3 lambda", f"{name}: init ms (spawn -> /next, p50 of {f['starts']})", "", f["init_ms_p50"],
             "<= 50", verdict(f["init_ms_p50"], 50)],
            ["3 lambda", f"{name}: peak RSS MB (512 MB function)", "", f["peak_rss_mb"], "<= 40",
             verdict(f["peak_rss_mb"], 40)],
            ["3 lambda", f"{name}: first invocation ms / AWS calls ({f['event']})", "",
             f"{f['first_invocation_ms_p50']} / {f['first_invocation_aws_calls']}", "-", ""],
            ["3 lambda", f"{name}: warm invocation ms p50/p99 (n={f['invocations']})", "",
             f"{f['invocation_ms_p50']} / {f['invocation_ms_p99']}", "-", ""],
        ]
    return rows


def scale_text(figure, poll):
    """`wall ms / AWS calls` of a scale run's `poll` ("first" or "later"), or why there is none."""
    if not figure:
        return "-"
    if "timed_out_after_s" in figure or "error" in figure:
        return figure.get("error") or f"no answer in {figure['timed_out_after_s']:g} s"
    wall = figure["first_poll_ms"] if poll == "first" else figure["later_poll_ms_p50"]
    calls = figure["first_poll_aws_calls"] if poll == "first" else max(figure["later_poll_aws_calls"] or [0])
    states = ",".join(figure[f"{poll}_poll_states"])
    return f"{wall:.0f} ms / {calls} calls ({states})"


def scale_rows(results):
    rows = []
    scale, sizes = results.get("scale", {}), results["sizes"]
    requests, machines = sizes["scale"][:2]
    for poll in ("first", "later"):
        local = scale.get("sqlite") or {}
        met = verdict(local.get("first_poll_ms" if poll == "first" else "later_poll_ms_p50"), 1000)
        rows.append(["4 scale", f"{requests * machines:,} machines in {requests} requests, {poll} poll "
                     "(EC2 in process): wall ms / AWS calls", scale_text(scale.get("sqlite"), poll),
                     scale_text(scale.get("dynamodb"), poll), "<= 1000 ms (embedded store)", met])
    def reconcile_text(figure):
        if not figure or "reconcile_ms" not in figure:
            return scale_text(figure, "first") if figure else "-"
        return f"{figure['reconcile_ms']:.0f} ms / {figure['reconcile_aws_calls']} calls ({figure['reconcile_finished']} finished)"
    rows.append(["4 scale", f"reconcile pass, {requests} active requests x {machines} (EC2 in process): wall ms / "
                 "AWS calls", reconcile_text(scale.get("sqlite")), reconcile_text(scale.get("dynamodb")), "-", ""])
    configs = results["configs"]
    t = [configs.get(c, {}).get("throughput getAvailableTemplates") for c in ("local", "deployed")]
    text = [f"{x['requests_per_s']}/s (p99 {x['latency_ms_p99']} ms, {x['errors']} errors)" if x else "-" for x in t]
    threads = next((x["threads"] for x in t if x), 0)
    rows.append(["4 scale", f"server getAvailableTemplates throughput ({threads} keep-alive clients)", *text, "-", ""])
    return rows


def rows(results):
    sizes = results["sizes"]
    return (call_rows(results["configs"], sizes) + function_rows(results.get("functions", {}))
            + scale_rows(results))


def table(rows):
    header = ["section", "figure", LOCAL, DEPLOYED, "target", "met"]
    cells = [header] + [[str("" if c is None else c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def svg(results, path):
    """Two log-scale bar panels per case: AWS calls and wall-time median, both configurations."""
    configs = results["configs"]
    cases = [c for c in dict.fromkeys([*configs.get("local", {}), *configs.get("deployed", {})])
             if not c.startswith("throughput")]
    panels = [("AWS calls per HostFactory call", "aws_calls"), ("wall time p50 (ms), script process", "wall_ms_p50")]
    bar, gap, label_w, panel_w = 7, 6, 330, 330
    height = 60 + len(cases) * (2 * bar + gap)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + 2 * panel_w + 40}" height="{height + 30}" '
           'font-family="sans-serif" font-size="10">', '<rect width="100%" height="100%" fill="white"/>']
    colors = {"local": "#4c72b0", "deployed": "#dd8452"}
    for p, (title, key) in enumerate(panels):
        x0 = label_w + p * (panel_w + 20)
        top = max([configs[c][k].get(key) or 0 for c in configs for k in cases if k in configs[c]] + [1])
        scale = (panel_w - 60) / math.log10(1 + top)
        out.append(f'<text x="{x0}" y="20" font-weight="bold">{escape(title)} (log scale)</text>')
        for i, case in enumerate(cases):
            y = 40 + i * (2 * bar + gap)
            if p == 0:
                out.append(f'<text x="{label_w - 6}" y="{y + bar + 3}" text-anchor="end">{escape(case)}</text>')
            for j, name in enumerate(("local", "deployed")):
                value = configs.get(name, {}).get(case, {}).get(key)
                if value is None:
                    continue
                width = max(1, math.log10(1 + value) * scale)
                out.append(f'<rect x="{x0}" y="{y + j * bar}" width="{width:.1f}" height="{bar - 1}" fill="{colors[name]}"/>')
                out.append(f'<text x="{x0 + width + 3:.1f}" y="{y + j * bar + bar - 1}" font-size="8">{value:g}</text>')
    for j, (name, label) in enumerate((("local", LOCAL), ("deployed", DEPLOYED))):
        out.append(f'<rect x="{label_w + j * 140}" y="{height + 5}" width="10" height="10" fill="{colors[name]}"/>')
        out.append(f'<text x="{label_w + j * 140 + 14}" y="{height + 14}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as file:
        file.write("\n".join(out) + "\n")

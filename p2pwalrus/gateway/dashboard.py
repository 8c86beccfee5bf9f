"""The dashboard: one self-contained HTML page (inline CSS and JS, no external assets).

The page is rendered filled on the server (`render_page`): the first paint shows the nodes
and recent blobs. Every 2 s its script fetches `dashboard/state`, whose `html` member holds
the same fragments rendered again, so the formatting lives here only: human times ("12 s
ago", "ends in 40 min") and repair state in plain words.
"""

from __future__ import annotations

import html
import re
import time

DASHBOARD_HTML = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>p2pwalrus gateway</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#0f1720;color:#dbe4ee}
 header{padding:12px 20px;background:#16212d;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
 h1{font-size:18px;margin:0} h2{font-size:15px;margin:18px 0 6px}
 main{padding:0 20px 20px} .k{color:#8aa0b6} .ok{color:#5fd38d} .bad{color:#ff6b6b} .warn{color:#f5c451}
 table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #233243;
 font-variant-numeric:tabular-nums} th{color:#8aa0b6;font-weight:500} code{font-size:12px}
 .shards span{display:inline-block;min-width:20px;margin:1px;padding:0 3px;background:#24415e;border-radius:3px;
 text-align:center;font-size:11px} #err{color:#ff6b6b}
</style></head><body>
<header><h1>p2pwalrus gateway</h1>
 <div><span class="k">network</span> <b id="net">{net}</b></div>
 <div><span class="k">epoch</span> <b id="epoch">{epoch}</b></div>
 <div><span class="k">live nodes</span> <b id="live">{live}</b></div>
 <div><span class="k">cache</span> <b id="cache">{cache}</b></div>
 <div id="err"></div></header>
<main>
<h2>Nodes and their shards</h2>
<table><thead><tr><th>peer</th><th>state</th><th>shards</th><th>blobs</th><th>certified</th><th>disk</th>
<th>store requests</th><th>repair</th><th>storage challenges</th></tr></thead><tbody id="nodes">{nodes}</tbody></table>
<h2>Recent blobs through this gateway</h2>
<table><thead><tr><th>when</th><th>op</th><th>blob ID</th><th>size</th><th>status</th><th>shards stored</th>
<th>end epoch</th><th>took</th></tr></thead><tbody id="recent">{recent}</tbody></table>
</main>
<script>
"use strict";
async function poll(){
 const err = document.getElementById("err");
 try{
  const r = await fetch("dashboard/state",{cache:"no-store"}); if(!r.ok) throw new Error("HTTP "+r.status);
  const s = await r.json();
  for (const [id, frag] of Object.entries(s.html)) document.getElementById(id).innerHTML = frag;
  err.textContent = "";
 }catch(e){ err.textContent = "update failed: "+e.message; }
}
setInterval(poll, 2000);
</script></body></html>
"""


def esc(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def human_bytes(n) -> str:
    if n is None:
        return ""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    x, i = float(n), 0
    while x >= 1024 and i < len(units) - 1:
        x /= 1024
        i += 1
    return f"{x:.1f} {units[i]}" if i else f"{int(x)} B"


def human_duration(seconds: float) -> str:
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} days"


def ago(t: float, now: float) -> str:
    return "just now" if now - t < 1 else f"{human_duration(now - t)} ago"


def clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def repair_words(repair: dict, now: float) -> str:
    """A node's repair statistics in plain words."""
    if not repair:
        return '<span class="k">not reported</span>'
    parts = []
    queue = repair.get("repair_queue", 0) or 0
    parts.append(f'<span class="warn">repairing {queue} sliver pairs</span>' if queue else
                 '<span class="ok">nothing to repair</span>')
    restored = (repair.get("repair_pairs_restored") or 0)
    recovered = (repair.get("repair_slivers_recovered") or 0)
    if restored or recovered:
        parts.append(f"restored {restored} pairs, {recovered} slivers "
                     f"({human_bytes(repair.get('repair_bytes_moved') or 0)} moved)")
    failures = repair.get("repair_failures") or 0
    if failures:
        parts.append(f'<span class="bad">{failures} failed in the last sweep</span>')
    full = repair.get("repair_full_redundancy_at")
    if isinstance(full, (int, float)) and full > 0:
        parts.append(f'<span title="{esc(clock(full))}">full redundancy {ago(full, now)}</span>')
    bad = repair.get("repair_inconsistent_blobs") or 0
    if bad:
        parts.append(f'<span class="bad">{bad} blobs found inconsistent</span>')
    return "; ".join(parts)


def challenge_words(repair: dict) -> str:
    passed = repair.get("challenges_passed") or 0
    failed = sum(v or 0 for k, v in repair.items() if k.startswith("challenges_") and k != "challenges_passed")
    if not passed and not failed:
        return '<span class="k">none yet</span>'
    text = f"{passed} passed"
    return text + (f', <span class="bad">{failed} failed</span>' if failed else "")


STATUS_WORDS = {"newly_created": "stored", "already_certified": "already stored", "cache_hit": "served from cache",
                "ok": "served", "not_found": "not found", "unavailable": "not enough nodes", "timeout": "timed out"}


def status_class(status: str) -> str:
    if status in ("ok", "newly_created", "already_certified", "cache_hit"):
        return "ok"
    return "warn" if status in ("unavailable", "timeout") else "bad"


def fragments(state: dict, epoch_start, epoch_length: float) -> dict[str, str]:
    """The page's dynamic parts, by element ID, as HTML (every value escaped)."""
    now = state.get("now") or time.time()
    epoch = state["epoch"]
    ends = epoch_start(epoch + 1) - now
    cache = state["cache"]
    nodes = []
    for n in state["nodes"]:
        peer = n["peer_id"]
        up = ('<span class="ok">up</span>' if n["reachable"] else
              f'<span class="bad" title="{esc(n.get("error"))}">unreachable</span>')
        shards = "".join(f"<span>{esc(x)}</span>" for x in n.get("shards") or [])
        repair = n.get("repair") or {}
        cells = [f'<code title="{esc(peer)}">{esc(peer[:16])}…</code>', up, f'<span class="shards">{shards}</span>',
                 esc(n.get("blobs")), esc(n.get("certified_blobs")), human_bytes(n.get("bytes_used")),
                 esc(n.get("store_requests")), repair_words(repair, now) if n["reachable"] else "",
                 challenge_words(repair) if n["reachable"] else ""]
        nodes.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    recent = []
    for b in state["recent"]:
        status = b.get("status") or ""
        cells = [f'<span title="{esc(clock(b["time"]))}">{esc(ago(b["time"], now))}</span>', esc(b.get("op")),
                 f"<code>{esc(b['blob_id'])}</code>" if b.get("blob_id") else "", human_bytes(b.get("size")),
                 f'<span class="{status_class(status)}" title="{esc(status)}">{esc(STATUS_WORDS.get(status, status.replace("_", " ")))}</span>',
                 f"{esc(b['shards'])} of {esc(state['n_shards'])}" if b.get("shards") is not None else "",
                 esc(b.get("end_epoch")), f"{b.get('seconds', 0) * 1000:.0f} ms"]
        recent.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return {
        "net": f"{esc(state['network'])} ({esc(state['n_shards'])} shards)",
        "epoch": f"{esc(epoch)} <span class=\"k\">(ends in {human_duration(ends)}; epochs last {human_duration(epoch_length)})</span>",
        "live": esc(state["live_nodes"]),
        "cache": f"{human_bytes(cache['bytes'])} in {esc(cache['entries'])} blobs",
        "nodes": "".join(nodes) or '<tr><td colspan="9"><span class="k">no live node known</span></td></tr>',
        "recent": "".join(recent) or '<tr><td colspan="8"><span class="k">nothing stored or read yet</span></td></tr>',
    }


def render_page(parts: dict[str, str]) -> str:
    return re.sub(r"\{(net|epoch|live|cache|nodes|recent)\}", lambda m: parts[m.group(1)], DASHBOARD_HTML)

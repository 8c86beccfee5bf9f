"""The dashboard: one self-contained HTML page (inline CSS and JS, no external assets)."""

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
 <div><span class="k">network</span> <b id="net">…</b></div>
 <div><span class="k">epoch</span> <b id="epoch">…</b></div>
 <div><span class="k">live nodes</span> <b id="live">…</b></div>
 <div><span class="k">cache</span> <b id="cache">…</b></div>
 <div id="err"></div></header>
<main>
<h2>Nodes and their shards</h2>
<table><thead><tr><th>peer</th><th>state</th><th>shards</th><th>blobs</th><th>certified</th><th>disk</th>
<th>store reqs</th><th>repair / challenges</th></tr></thead><tbody id="nodes"></tbody></table>
<h2>Recent blobs through this gateway</h2>
<table><thead><tr><th>when</th><th>op</th><th>blob ID</th><th>size</th><th>status</th><th>shards stored</th>
<th>end epoch</th><th>time</th></tr></thead><tbody id="recent"></tbody></table>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
function esc(v){return String(v ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));}
function bytes(n){if(n==null)return "";const u=["B","KiB","MiB","GiB","TiB"];let i=0;while(n>=1024&&i<u.length-1){n/=1024;i++;}return n.toFixed(i?1:0)+" "+u[i];}
function ago(t){const s=Math.max(0,Date.now()/1000-t);return s<60?s.toFixed(0)+" s ago":(s/60).toFixed(0)+" min ago";}
function cls(st){return ["ok","newly_created","already_certified","cache_hit"].includes(st)?"ok":(st==="unavailable"||st==="timeout")?"warn":"bad";}
function row(cells){return "<tr>"+cells.map(c=>"<td>"+c+"</td>").join("")+"</tr>";}
async function poll(){
 try{
  const r = await fetch("dashboard/state",{cache:"no-store"}); if(!r.ok) throw new Error("HTTP "+r.status);
  const s = await r.json();
  $("net").textContent = s.network+" ("+s.n_shards+" shards)"; $("epoch").textContent = s.epoch;
  $("live").textContent = s.live_nodes; $("cache").textContent = bytes(s.cache.bytes)+" in "+s.cache.entries+" blobs";
  $("nodes").innerHTML = s.nodes.map(n => row([
   "<code title='"+esc(n.peer_id)+"'>"+esc(n.peer_id.slice(0,16))+"…</code>",
   n.reachable?"<span class=ok>up</span>":"<span class=bad title='"+esc(n.error)+"'>unreachable</span>",
   "<span class=shards>"+(n.shards||[]).map(x=>"<span>"+esc(x)+"</span>").join("")+"</span>",
   esc(n.blobs), esc(n.certified_blobs), bytes(n.bytes_used), esc(n.store_requests),
   Object.entries(n.repair||{}).map(([k,v])=>esc(k)+"="+esc(v)).join(" ")||"<span class=k>none reported</span>"
  ])).join("");
  $("recent").innerHTML = s.recent.map(b => row([
   esc(ago(b.time)), esc(b.op), b.blob_id?"<code>"+esc(b.blob_id)+"</code>":"", bytes(b.size),
   "<span class="+cls(b.status)+">"+esc(b.status)+"</span>", esc(b.shards ?? ""), esc(b.end_epoch ?? ""),
   esc((b.seconds*1000).toFixed(0))+" ms"])).join("") || row(["<span class=k>nothing yet</span>","","","","","","",""]);
  $("err").textContent = "";
 }catch(e){ $("err").textContent = "update failed: "+e.message; }
}
poll(); setInterval(poll, 2000);
</script></body></html>
"""

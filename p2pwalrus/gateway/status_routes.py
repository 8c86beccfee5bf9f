"""The gateway's own pages: /status, /metrics, the OpenAPI document and the dashboard.
"""

from __future__ import annotations

import time

from ..core.thresholds import max_faulty
from .asgi import Request, Response, json_response


class StatusRoutes:
    """Gateway methods: the status, metrics, OpenAPI and dashboard routes."""

    async def status(self, req: Request) -> Response:
        c, net = self.client, self.client.net
        smap = c.shard_map
        return json_response({
            "network": net.name,
            "n_shards": net.n_shards,
            "f": max_faulty(net.n_shards),
            "epoch": net.current_epoch(),
            "epoch_length": net.epoch_length,
            "genesis_time": net.genesis_time,
            "max_epochs_ahead": net.max_epochs_ahead,
            "live_nodes": len(c.records),
            "nodes": {p: {"shards": list(smap.shards_of(p)) if smap else []} for p in c.live_peers()},
            "shard_map_digest": smap.digest().hex() if smap else None,
            "prices": self.prices_json(),
            "last_refresh": self.last_refresh,
            "gateway": {"peer_id": c.peer_id, "publisher": self.config.publisher,
                        "aggregator": self.config.aggregator, "max_body": self.config.max_body,
                        "auth": bool(self.config.auth_token), "rate_limit_per_minute": self.config.rate_limit,
                        "cache_bytes": self.cache.used, "cache_capacity": self.cache.capacity,
                        "uptime": time.time() - self.started},
        })

    async def prometheus(self, req: Request) -> Response:
        body, ctype = self.metrics.exposition()
        return Response(200, body, {}, ctype)

    async def openapi(self, req: Request) -> Response:
        from .openapi import openapi_document

        doc = openapi_document(self.config)
        prices = self.prices_json()
        doc["info"]["x-prices"] = prices  # FROST per 1 MiB unit of encoded size: per epoch, and per write
        doc["info"]["description"] = (doc["info"].get("description", "") + " Storage costs storage_price_per_unit "
                                      f"({prices['storage_price_per_unit']} FROST) x units x epochs + "
                                      f"write_price_per_unit ({prices['write_price_per_unit']} FROST) x units, "
                                      "units being 1 MiB of encoded size, paid from the gateway's account.").strip()
        return json_response(doc)

    async def dashboard(self, req: Request) -> Response:
        """The page, filled with the current state (the first paint shows it; the script updates it)."""
        from .dashboard import render_page

        state = await self._dashboard_state()
        return Response(200, render_page(state["html"]).encode(), {"Cache-Control": "no-cache"},
                        "text/html; charset=utf-8")

    async def dashboard_state(self, req: Request) -> Response:
        return json_response(await self._dashboard_state(), headers={"Cache-Control": "no-cache"})

    async def _dashboard_state(self) -> dict:
        c = self.client
        smap = c.shard_map
        infos = await self.node_infos()
        nodes = []
        for peer in sorted(set(c.live_peers()) | set(infos)):
            info = infos.get(peer, {})
            extra = {k: v for k, v in info.items()
                     if isinstance(v, (int, float)) and any(w in k for w in ("repair", "challenge", "recover"))}
            for key in ("repair_stats", "repair"):
                if isinstance(info.get(key), dict):
                    extra.update({f"repair_{k}": v for k, v in info[key].items() if isinstance(v, (int, float))})
            if isinstance(info.get("challenges"), dict):  # holder -> {"passed": n, "failed": n}
                for res in info["challenges"].values():
                    for k, v in (res.items() if isinstance(res, dict) else ()):
                        if isinstance(v, (int, float)):
                            extra[f"challenges_{k}"] = extra.get(f"challenges_{k}", 0) + v
            nodes.append({
                "peer_id": peer,
                "reachable": "error" not in info,
                "error": info.get("error"),
                "shards": list(smap.shards_of(peer)) if smap and peer in c.records else info.get("shards", []),
                "blobs": info.get("blobs"),
                "certified_blobs": info.get("certified_blobs"),
                "bytes_used": info.get("bytes_used"),
                "live_seen": len(info.get("live", [])) if "live" in info else None,
                "store_requests": info.get("store_requests"),
                "certs_rejected": info.get("certs_rejected"),
                "repair": extra,
            })
        from .dashboard import fragments

        net = c.net
        state = {
            "network": net.name, "n_shards": net.n_shards, "epoch": net.current_epoch(),
            "live_nodes": len(c.records), "nodes": nodes, "recent": list(reversed(self.recent)),
            "cache": {"bytes": self.cache.used, "entries": len(self.cache.entries), "capacity": self.cache.capacity},
            "prices": self.prices_json(),
            "now": time.time(),
        }
        state["html"] = fragments(state, net.epoch_start, net.epoch_length)
        return state

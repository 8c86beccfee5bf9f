"""The OpenAPI 3 description of the gateway's routes, served at /v1/api."""

from __future__ import annotations

from .. import __version__


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(config=None) -> dict:
    blob_id = {"name": "blob_id", "in": "path", "required": True,
               "description": "Walrus blob ID (43 characters of URL-safe base64)", "schema": {"type": "string"}}
    blob_bytes = {"description": "The blob's bytes", "headers": {
        "ETag": {"schema": {"type": "string"}, "description": "The blob ID, quoted"},
        "Cache-Control": {"schema": {"type": "string"}},
        "Content-Length": {"schema": {"type": "integer"}}},
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    read_errors = {"400": _error("Malformed blob ID or parameters"), "404": _error("Blob not found"),
                   "410": _error("Blob expired or marked invalid"),
                   "503": _error("Not enough shards reachable to read the blob")}
    paths: dict = {}
    if config is None or config.publisher:
        paths["/v1/blobs"] = {"put": {
            "summary": "Store a blob (publisher)",
            "operationId": "putBlob",
            "parameters": [
                {"name": "epochs", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1},
                 "description": "Number of epochs ahead to store the blob for"},
                {"name": "deletable", "in": "query", "schema": {"type": "boolean", "default": False}},
                {"name": "permanent", "in": "query", "schema": {"type": "boolean", "default": True}},
                {"name": "force", "in": "query", "schema": {"type": "boolean", "default": False},
                 "description": "Store again even if already certified"},
            ],
            "requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}},
            "security": [{}, {"bearer": []}],
            "responses": {
                "200": {"description": "Stored, or already certified", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/BlobStoreResult"}}}},
                "400": _error("Bad parameters"), "401": _error("Missing or wrong bearer token"),
                "413": _error("Body over the gateway's limit or the largest encodable blob"),
                "402": _error("The gateway's WAL account cannot pay for the store (cost and balance in the message)"),
                "429": _error("Rate limit exceeded"), "503": _error("Not enough shards reachable to store"),
            },
        }}
    if config is None or config.aggregator:
        paths["/v1/blobs/{blob_id}"] = {
            "get": {"summary": "Read a blob (aggregator); a single Range is honoured", "operationId": "getBlob",
                    "parameters": [blob_id, {"name": "Range", "in": "header", "schema": {"type": "string"}}],
                    "responses": {"200": blob_bytes, "206": {"description": "The requested range"},
                                  "304": {"description": "Not modified (If-None-Match)"},
                                  "416": _error("Range not satisfiable"), **read_errors}},
            "head": {"summary": "Headers of a blob read", "operationId": "headBlob", "parameters": [blob_id],
                     "responses": {"200": {"description": "Headers only"}, **read_errors}},
        }
        paths["/v1/blobs/{blob_id}/byte-range"] = {"get": {
            "summary": "Read `length` bytes from offset `start`", "operationId": "getBlobByteRange",
            "parameters": [blob_id,
                           {"name": "start", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 0}},
                           {"name": "length", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1}}],
            "responses": {"200": blob_bytes, "416": _error("start past the end of the blob"), **read_errors},
        }}
    from .sites import openapi_paths as quilt_paths

    paths.update(quilt_paths(config))  # quilts and sites: gateway/sites.py
    paths["/v1/api"] = {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}}
    paths["/status"] = {"get": {"summary": "Network parameters, epoch and live nodes",
                                "responses": {"200": {"description": "JSON"}}}}
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text exposition format"}}}}
    paths["/"] = {"get": {"summary": "Dashboard (HTML)", "responses": {"200": {"description": "HTML"}}}}
    paths["/dashboard/state"] = {"get": {"summary": "What the dashboard shows, as JSON",
                                         "responses": {"200": {"description": "JSON"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "p2pwalrus gateway", "version": __version__,
                 "description": "Walrus-compatible publisher and aggregator API over a p2pwalrus network."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "integer"}, "status": {"type": "string"}, "message": {"type": "string"},
                    "details": {"type": "array", "items": {}}}}}},
                "BlobStoreResult": {"oneOf": [
                    {"type": "object", "properties": {"newlyCreated": {"type": "object", "properties": {
                        "blobObject": {"type": "object"}, "resourceOperation": {"type": "object"},
                        "cost": {"type": "integer"}}}}},
                    {"type": "object", "properties": {"alreadyCertified": {"type": "object", "properties": {
                        "blobId": {"type": "string"}, "event": {"type": "object", "nullable": True},
                        "endEpoch": {"type": "integer"}}}}},
                ]},
            },
        },
    }

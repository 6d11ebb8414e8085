//! `GET /openapi.json`: an OpenAPI 3.1 document of every route, written by hand.
//!
//! Not generated (utoipa): the key routes' `{*key}` wildcard has no OpenAPI spelling a
//! generator derives from axum (it is `{key}` here, slashes allowed), and the routes' answers
//! come from the custom layers (`json_errors`, the token checks), which no annotation sees. What
//! keeps the document from drifting instead is the test below: it reads the router's
//! `.route(...)` calls from `server.rs` and fails unless every path and method registered
//! there is in the document (and the other way round), and `.ci/schemathesis.sh` checks the live
//! server's answers against the document.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| format!("{}\n", document()));

pub(crate) async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

/// A response with a JSON body of `schema` (a `#/components/schemas` name).
fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn error(description: &str) -> Value {
    json_response(description, "Error")
}

/// The refusals every route with a token may answer, plus `extra`.
fn with_errors(mut responses: Value, extra: &[(&str, Value)]) -> Value {
    let common = [
        ("400", error("Malformed request: a parameter, header or body the API cannot use")),
        ("401", json!({ "$ref": "#/components/responses/Unauthorized" })),
        ("403", error("The token is for another store, or lacks the permission")),
        ("429", json!({ "$ref": "#/components/responses/RateLimited" })),
        ("503", error("The node is shutting down, or catching up its own log (retry after Retry-After)")),
    ];
    if let Some(map) = responses.as_object_mut() {
        for (status, response) in common.into_iter().chain(extra.iter().cloned()) {
            map.insert(status.into(), response);
        }
    }
    responses
}

fn param(name: &str, place: &str, required: bool, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": place, "required": required, "description": description, "schema": schema })
}

fn store_param() -> Value {
    param("store", "path", true, "A store's name or uuid", json!({ "type": "string", "minLength": 1 }))
}

fn key_param() -> Value {
    param(
        "key",
        "path",
        true,
        "The key (UTF-8; may contain `/`): the rest of the path",
        json!({ "type": "string", "minLength": 1 }),
    )
}

fn etag_header() -> Value {
    json!({ "description": "The key's ETag: the hash of the entry that wrote its winning value, quoted",
            "schema": { "type": "string" } })
}

fn receipt_response(description: &str) -> Value {
    let mut r = json_response(description, "Receipt");
    r["headers"] = json!({ "ETag": etag_header() });
    r
}

fn precondition_failed() -> Value {
    json_response(
        "A condition did not hold: nothing was written. `etag` is the key's current ETag (null: no value)",
        "PreconditionFailed",
    )
}

/// The whole document.
pub(crate) fn document() -> Value {
    let security = json!([{ "bearer": [] }]);
    let key_get = json!({
        "operationId": "getKey",
        "summary": "A key's value",
        "security": security,
        "parameters": [store_param(), key_param(),
            param("If-None-Match", "header", false, "`*`, an ETag or a list of them: 304 if one matches",
                  json!({ "type": "string" })),
            param("at", "query", false,
                  "Time travel: the register's value as of an RFC 3339 time with its offset or an HLC \
                   (`WALL_MS.COUNTER`); 404 if it had none then, 400 for a counter or a set. No ETag",
                  json!({ "type": "string" }))],
        "responses": with_errors(json!({
            "200": { "description": "A register's raw value; a counter or a set as JSON",
                     "headers": { "ETag": etag_header() },
                     "content": {
                         "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
                         "application/json": { "schema": { "$ref": "#/components/schemas/KindedValue" } },
                     } },
            "304": { "description": "Not modified: If-None-Match matched", "headers": { "ETag": etag_header() } },
        }), &[("404", error("The key has no value"))]),
    });
    let proof = json!({
        "operationId": "getProof",
        "summary": "A Merkle proof of the key (present or absent) against this node's signed root",
        "security": security,
        "parameters": [store_param(), key_param()],
        "responses": with_errors(json!({ "200": json_response("The proof; `lattice verify-proof` checks it", "Proof") }), &[]),
    });
    let key_put = json!({
        "operationId": "putKey",
        "summary": "Write a key; with If-Match or If-None-Match: * a compare-and-set",
        "security": security,
        "parameters": [store_param(), key_param(),
            param("If-Match", "header", false, "Write only if the key's winner is this ETag (else 412)",
                  json!({ "type": "string" })),
            param("If-None-Match", "header", false, "`*`: write only if the key has no value (else 412)",
                  json!({ "type": "string", "enum": ["*"] }))],
        "requestBody": { "required": true, "description": "The raw value (at most 1 MiB)",
                         "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
        "responses": with_errors(json!({ "200": receipt_response("Written") }), &[
            ("408", error("The body did not arrive within the body-read timeout")),
            ("409", error("The key holds another kind of value (a counter or a set, or a register)")),
            ("412", precondition_failed()),
            ("413", error("The body is over the limit")),
        ]),
    });
    let key_delete = json!({
        "operationId": "deleteKey",
        "summary": "Delete a key; with If-Match only if its winner is that ETag",
        "security": security,
        "parameters": [store_param(), key_param(),
            param("If-Match", "header", false, "Delete only if the key's winner is this ETag (else 412)",
                  json!({ "type": "string" }))],
        "responses": with_errors(json!({ "200": receipt_response("Deleted; the ETag is the tombstone's") }), &[
            ("404", error("The key has no value (without If-Match)")),
            ("412", precondition_failed()),
        ]),
    });
    let list = json!({
        "operationId": "listKeys",
        "summary": "A page of a store's keys and values, in key order",
        "security": security,
        "parameters": [store_param(),
            param("prefix", "query", false, "Only keys starting with this", json!({ "type": "string" })),
            param("limit", "query", false, "Page size, 1 to 1000 (default 100)",
                  json!({ "type": "integer", "minimum": 1, "maximum": 1000 })),
            param("after", "query", false, "The previous page's `next` (or a plain key)", json!({ "type": "string" }))],
        "responses": with_errors(json!({ "200": json_response("A page", "Listing") }), &[]),
    });
    let batch = json!({
        "operationId": "batch",
        "summary": "Operations written as one entry if every condition holds, else nothing",
        "security": security,
        "parameters": [store_param()],
        "requestBody": { "required": true, "description": "The items of `lattice batch` (at most 6 MiB)",
                         "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Batch" } } } },
        "responses": with_errors(json!({ "200": json_response("Written as one entry", "BatchReceipt") }), &[
            ("408", error("The body did not arrive within the body-read timeout")),
            ("409", error("The key holds another kind of value (a counter or a set, or a register)")),
            ("412", precondition_failed()),
            ("413", error("The body is over the limit")),
        ]),
    });
    let watch = json!({
        "operationId": "watch",
        "summary": "Server-Sent Events of puts and deletes under a prefix; `id` is an HLC, `Last-Event-ID` resumes",
        "security": security,
        "parameters": [store_param(),
            param("prefix", "query", false, "Only keys starting with this (UTF-8)", json!({ "type": "string" })),
            param("prefix_base64", "query", false, "Only keys starting with these bytes (base64); not with `prefix`",
                  json!({ "type": "string" })),
            param("last_event_id", "query", false, "As the `Last-Event-ID` header (which wins)",
                  json!({ "type": "string", "pattern": "^[0-9]+\\.[0-9]+$" })),
            param("Last-Event-ID", "header", false, "Resume after this event id (an HLC, `wall_ms.counter`)",
                  json!({ "type": "string", "pattern": "^[0-9]+\\.[0-9]+$" }))],
        "responses": with_errors(json!({
            "200": { "description": "An event stream (`put`, `delete`, a final `error`) until the client leaves",
                     "content": { "text/event-stream": { "schema": { "type": "string" } } } },
        }), &[("400", error("Both prefix forms, bad base64, or a resume point that is not an HLC"))]),
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Lattice HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The keys of a Lattice store over HTTP (docs/design.md, HTTP API). Every \
                error is JSON {\"error\": \"...\"}.",
        },
        "paths": {
            "/healthz": { "get": {
                "operationId": "healthz", "summary": "Liveness (no auth)", "security": [],
                "responses": { "200": json_response("Serving", "Health") },
            } },
            "/openapi.json": { "get": {
                "operationId": "openapi", "summary": "This document (no auth)", "security": [],
                "responses": { "200": { "description": "OpenAPI 3.1",
                                        "content": { "application/json": { "schema": { "type": "object" } } } } },
            } },
            "/stores/{store}/keys": { "get": list },
            "/stores/{store}/keys/{key}": { "get": key_get, "put": key_put, "delete": key_delete },
            "/stores/{store}/batch": { "post": batch },
            "/stores/{store}/watch": { "get": watch },
            "/stores/{store}/proof/{key}": { "get": proof },
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "ID:SECRET",
                            "description": "A token from `lattice create-token STORE`" },
            },
            "responses": {
                "Unauthorized": {
                    "description": "Missing, malformed, unknown, revoked or expired token",
                    "headers": { "WWW-Authenticate": { "schema": { "type": "string" }, "required": true } },
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
                },
                "RateLimited": {
                    "description": "The token's rate limit is exceeded",
                    "headers": { "Retry-After": { "description": "Seconds until a request is admitted",
                                                  "schema": { "type": "string" }, "required": true } },
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
                },
            },
            "schemas": schemas(),
        },
    })
}

fn schemas() -> Value {
    let encoding = json!({ "type": "string", "enum": ["utf8", "base64"] });
    json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
        "PreconditionFailed": {
            "type": "object", "required": ["error", "key", "etag"],
            "properties": {
                "error": { "type": "string" },
                "key": { "type": "string" },
                "key_encoding": { "const": "base64" },
                "etag": { "type": ["string", "null"] },
            },
        },
        "Health": { "type": "object", "required": ["status"], "properties": { "status": { "const": "ok" } } },
        "Receipt": {
            "type": "object", "required": ["hash", "hlc"],
            "properties": { "hash": { "type": "string", "pattern": "^[0-9a-f]{64}$" }, "hlc": { "type": "string" } },
        },
        "BatchReceipt": {
            "type": "object", "required": ["hash", "hlc", "ops"],
            "properties": {
                "hash": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
                "hlc": { "type": "string" },
                "ops": { "type": "integer", "minimum": 1 },
            },
        },
        "Listing": {
            "type": "object", "required": ["items", "next"],
            "properties": {
                "items": { "type": "array", "items": {
                    "type": "object", "required": ["key", "value", "encoding"],
                    "properties": {
                        "key": { "type": "string" }, "value": { "type": "string" },
                        "encoding": encoding, "key_encoding": { "const": "base64" },
                    },
                } },
                "next": { "type": ["string", "null"], "description": "Opaque cursor for `after`; null on the last page" },
            },
        },
        "KindedValue": {
            "type": "object", "required": ["key", "kind"],
            "properties": {
                "key": { "type": "string" },
                "key_encoding": encoding,
                "kind": { "type": "string", "enum": ["counter", "set"] },
                "value": { "type": "integer", "format": "int64", "description": "A counter's sum" },
                "members": { "type": "array", "items": { "type": "string" }, "description": "A set's members, in byte order" },
                "encoding": encoding,
            },
        },
        "Proof": {
            "type": "object",
            "required": ["store", "key", "present", "value", "heads", "path", "root", "attestation"],
            "properties": {
                "store": { "type": "string", "format": "uuid" },
                "key": { "type": "string" },
                "key_encoding": encoding,
                "present": { "type": "boolean" },
                "kind": { "type": "string", "enum": ["register", "counter", "set"] },
                "value": { "type": ["string", "null"], "description": "The visible register value (null: absent, deleted, or a counter or set)" },
                "encoding": encoding,
                "heads": { "type": "array", "items": {
                    "type": "object", "required": ["value", "hlc", "author", "hash", "tombstone", "kind"],
                    "properties": {
                        "value": { "type": "string" }, "encoding": encoding, "hlc": { "type": "string" },
                        "author": { "type": "string" }, "hash": { "type": "string" },
                        "tombstone": { "type": "boolean" }, "kind": { "type": "string" },
                    } } },
                "path": {
                    "type": "object", "required": ["key_hash", "siblings", "end"],
                    "properties": {
                        "key_hash": { "type": "string" },
                        "siblings": { "type": "array", "items": { "type": "array", "items": { "type": "string" } } },
                        "end": { "type": "object" },
                    },
                },
                "root": { "type": "string", "description": "Hex of the Merkle root" },
                "attestation": {
                    "type": "object",
                    "required": ["store", "root", "frontier", "entries", "hlc", "node", "signature"],
                    "properties": {
                        "store": { "type": "string" }, "root": { "type": "string" }, "frontier": { "type": "string" },
                        "entries": { "type": "integer" }, "hlc": { "type": "string" }, "node": { "type": "string" },
                        "signature": { "type": "string" },
                    },
                },
            },
        },
        "Batch": {
            "type": "object", "required": ["ops"], "additionalProperties": false,
            "properties": { "ops": { "type": "array", "minItems": 1, "items": { "$ref": "#/components/schemas/BatchOp" } } },
        },
        "BatchOp": {
            "type": "object", "required": ["op", "key"], "additionalProperties": false,
            "properties": {
                "op": { "type": "string", "enum": ["put", "delete", "incr", "decr", "sadd", "srem"] },
                "key": { "type": "string", "minLength": 1 },
                "key_encoding": encoding,
                "value": { "type": "string", "description": "For a put" },
                "by": { "type": "integer", "format": "int64", "description": "For incr/decr (default 1)" },
                "member": { "type": "string", "description": "For sadd/srem" },
                "encoding": encoding,
                "if_match": { "type": "string", "description": "The key's ETag (quoted or bare hex)" },
                "if_absent": { "type": "boolean" },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(method, path)` of every `.route(...)` call in `server.rs`'s router, with axum's
    /// `{*key}` spelt as OpenAPI's `{key}`.
    fn routes_in_router() -> BTreeSet<(String, String)> {
        let source = include_str!("server.rs");
        let mut routes = BTreeSet::new();
        for (start, _) in source.match_indices(".route(\"") {
            let rest = &source[start + ".route(\"".len()..];
            let Some(end) = rest.find('"') else { continue };
            let path = rest[..end].replace("{*", "{");
            // The call's text, up to its closing parenthesis.
            let mut depth = 1;
            let call: String = rest[end..]
                .chars()
                .take_while(|c| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth > 0
                })
                .collect();
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                let registered = call
                    .match_indices(&format!("{method}("))
                    .any(|(at, _)| at == 0 || call[..at].ends_with(|c: char| !(c.is_alphanumeric() || c == '_')));
                if registered {
                    routes.insert((method.to_string(), path.clone()));
                }
            }
        }
        routes
    }

    fn routes_in_document() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                routes.insert((method.clone(), path.clone()));
            }
        }
        routes
    }

    #[test]
    fn every_route_of_the_router_is_in_the_document() {
        let router = routes_in_router();
        assert!(router.len() >= 7, "the scan found the router's routes: {router:?}");
        let documented = routes_in_document();
        let missing: Vec<_> = router.difference(&documented).collect();
        assert!(missing.is_empty(), "routes missing from openapi.rs: {missing:?}");
        let extra: Vec<_> = documented.difference(&router).collect();
        assert!(extra.is_empty(), "documented routes the router lacks: {extra:?}");
    }

    #[test]
    fn the_document_is_openapi_3_1_with_the_bearer_scheme() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        let put = &doc["paths"]["/stores/{store}/keys/{key}"]["put"]["responses"];
        for status in ["200", "400", "401", "403", "412", "413", "429"] {
            assert!(put.get(status).is_some(), "PUT documents {status}");
        }
        assert!(doc["paths"]["/stores/{store}/keys/{key}"]["get"]["responses"].get("304").is_some());
        // Every $ref resolves.
        let text = doc.to_string();
        for (at, _) in text.match_indices("\"$ref\":\"#/") {
            let target = &text[at + "\"$ref\":\"#/".len()..];
            let target = &target[..target.find('"').unwrap_or(0)];
            let resolved = target.split('/').try_fold(&doc, |node, part| node.get(part));
            assert!(resolved.is_some(), "unresolved $ref #/{target}");
        }
    }
}

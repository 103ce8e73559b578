"""The OpenAPI document and the docs page: complete, accurate about roles, and servable
offline under a strict CSP."""

from __future__ import annotations

from typing import Any

from httpkit import Api, auth

from tickq.http.access import is_public
from tickq.http.openapi import DOCS_PATH, OPENAPI_PATH, OPERATIONS, api_routes

METHODS = {"get", "post", "put", "patch", "delete"}


async def _document(api: Api) -> dict[str, Any]:
    resp = await api.client.get(OPENAPI_PATH)
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m in METHODS}


async def test_every_served_route_is_documented_and_vice_versa(api: Api) -> None:
    served = set(api_routes(api.client.app))
    doc = await _document(api)
    assert served == _operations(doc)
    assert served == set(OPERATIONS), "OPERATIONS and the app's routes disagree"


async def test_document_is_openapi_31_with_bearer_security(api: Api) -> None:
    doc = await _document(api)
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert doc["security"] == [{"bearerAuth": []}]
    assert set(doc["components"]["schemas"]["Error"]["required"]) == {
        "error", "code", "message", "requestId"}


async def test_operations_carry_parameters_bodies_roles_and_errors(api: Api) -> None:
    doc = await _document(api)
    schemas = doc["components"]["schemas"]
    enqueue = doc["paths"]["/api/v1/queue/jobs"]["post"]
    assert enqueue["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewJob"}
    assert {"NewJob", "JobOptions", "NewBatch", "BatchJob", "JobState"} <= set(schemas)
    assert {"200", "201", "400", "401", "403", "409"} <= set(enqueue["responses"])
    assert enqueue["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    listing = doc["paths"]["/api/v1/queue/jobs"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "queue", "state", "type", "tenant", "after", "limit"}
    one = doc["paths"]["/api/v1/queue/jobs/{id}"]["get"]
    assert {"name": "id", "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1}} in one["parameters"]
    assert doc["paths"]["/api/v1/queue/queues/{name}/pause"]["post"]["x-roles"] == ["admin"]
    assert doc["paths"]["/api/v1/queue/jobs/batch"]["post"]["x-roles"] == [
        "admin", "venue_admin"]
    for path, ops in doc["paths"].items():
        for op in ops.values():
            if op.get("security") == []:
                assert is_public(path), path
            else:
                assert "401" in op["responses"], path


async def test_documents_and_docs_page_are_public(api: Api) -> None:
    for path in (OPENAPI_PATH, DOCS_PATH):
        resp = await api.client.get(path)
        assert resp.status == 200, path
    # a token does not hurt either
    assert (await api.client.get(OPENAPI_PATH, headers=auth("monitoring"))).status == 200


async def test_docs_page_lists_every_operation_without_scripts(api: Api) -> None:
    resp = await api.client.get(DOCS_PATH)
    assert resp.content_type == "text/html"
    page = await resp.text()
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'none'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    for method, path in OPERATIONS:
        assert f"<code>{path}</code>" in page, path
        assert f">{method}<" in page

"""The query service's OpenAPI description (``GET /openapi.json``): its routes, the request
schema of ``POST /v1/align`` with the service's own limits, and the error answers. Tools that
read OpenAPI (client generators, schemathesis) work from it; the fuzz test keeps it equal to
the fields the service accepts."""

from __future__ import annotations

from typing import Any

from pluralign.engine.data.target_sets import TARGET_SET_NAMES
from pluralign.jobs.serve.query import MAX_SEED, SERVED_BENCHMARKS, SERVED_SPLITS, Limits

ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
         "properties": {"error": {"type": "string", "description": "One line."}}}
STATUSES = {"400": "bad input (names the field)", "401": "missing or wrong bearer token",
            "404": "not cached, or no data for that benchmark", "405": "wrong method",
            "408": "body not received within the deadline",
            "413": "body, targets, cells or synthetic size over the limits"}


def _errors(*codes: str) -> dict[str, Any]:
    return {c: {"description": STATUSES[c], "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for c in codes}


def align_request(limits: Limits) -> dict[str, Any]:
    """The JSON schema of a ``POST /v1/align`` body under ``limits``."""
    benchmark: dict[str, Any] = {"type": "string", "enum": list(SERVED_BENCHMARKS)}
    if limits.max_synthetic_scenarios > 0:
        benchmark = {"anyOf": [benchmark, {"type": "string", "pattern": "^synthetic(:.*)?$",
                                           "description": "at most "
                                           f"{limits.max_synthetic_scenarios} scenarios"}]}
    target = {"anyOf": [{"type": "string", "enum": list(TARGET_SET_NAMES)},
                        {"type": "object", "additionalProperties": {"type": "number"},
                         "description": "attribute -> target value"}]}
    return {
        "type": "object", "required": ["benchmark", "targets"], "additionalProperties": False,
        "properties": {
            "benchmark": benchmark,
            "split": {"type": "string", "enum": list(SERVED_SPLITS), "default": "eval"},
            "limit": {"type": "integer", "minimum": 1, "description": "first N scenarios"},
            "scorer": {"type": "string", "default": "ridge",
                       "description": "a model-free scorer name"},
            "scorer_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:+-]*#[0-9a-f]+$",
                          "description": "a cached scorer identity (name#hex)"},
            "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "default": 0},
            "value": {"type": "number", "default": 0.5},
            "samples": {"type": "integer", "minimum": 1, "maximum": limits.max_samples},
            "targets": {"anyOf": [target, {"type": "array", "items": target, "minItems": 1,
                                           "maxItems": limits.max_targets}]},
            "per_scenario": {"type": "boolean", "default": False},
            "weighted": {"type": "boolean", "default": True},
        }}


def openapi(limits: Limits) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service under ``limits``."""
    json_object = {"application/json": {"schema": {"type": "object"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "pluralign query service", "version": "1",
                 "description": "Re-alignment queries answered from the score cache alone."},
        "components": {
            "schemas": {"Error": ERROR, "AlignRequest": align_request(limits)},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/align": {"post": {
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/AlignRequest"}}}},
                "responses": {"200": {"description": "one row per target",
                                      "content": json_object},
                              **_errors("400", "401", "404", "408", "413")}}},
            "/v1/scorers": {"get": {
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "what the cache holds",
                                      "content": json_object}, **_errors("401")}}},
            "/healthz": {"get": {"responses": {"200": {"description": "serving",
                                                       "content": json_object}}}},
            "/openapi.json": {"get": {"responses": {"200": {"description": "this document",
                                                            "content": json_object}}}},
        }}

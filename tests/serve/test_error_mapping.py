"""tailorlm's own errors escaping a handler become the one JSON error shape, with the status
``serve/errors.py`` maps their class to; ApiError still sets its own status."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tailorlm.errors import (
    BackendError,
    ConfigError,
    DataError,
    FetchError,
    NoAdapterError,
    NoProjectorError,
    NotFoundError,
    SchemaVersionError,
    TailorlmError,
)
from tailorlm.serve.errors import ApiError, CatchAllMiddleware, install_error_handlers

ERRORS: dict[str, tuple[type[Exception], int, str]] = {
    # name in the route: (class, status, error.type)
    "tailorlm": (TailorlmError, 400, "invalid_request_error"),
    "config": (ConfigError, 400, "invalid_request_error"),
    "data": (DataError, 400, "invalid_request_error"),
    "not-found": (NotFoundError, 404, "not_found_error"),
    "no-adapter": (NoAdapterError, 404, "not_found_error"),
    "no-projector": (NoProjectorError, 404, "not_found_error"),
    "schema": (SchemaVersionError, 500, "server_error"),
    "backend": (BackendError, 502, "server_error"),
    "fetch": (FetchError, 502, "server_error"),
}


def _app() -> FastAPI:
    """A tiny app with the service's error handlers and catch-all, and routes that raise."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(CatchAllMiddleware)

    @app.get("/sync/{name}")
    def raise_sync(name: str) -> dict[str, str]:
        cls = ERRORS[name][0]
        raise cls(f"{cls.__name__} raised deep inside, for {name}")

    @app.get("/async/{name}")
    async def raise_async(name: str) -> dict[str, str]:
        cls = ERRORS[name][0]
        raise cls(f"{cls.__name__} raised deep inside, for {name}")

    @app.get("/api-error")
    def api_error() -> dict[str, str]:
        raise ApiError(409, "handlers still choose their own status", param="x")

    @app.get("/plain-lookup")
    def plain_lookup() -> dict[str, str]:
        raise LookupError("secret detail that must not leak")

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_app(), raise_server_exceptions=False)


def test_no_adapter_error_from_inside_a_route_is_a_404_in_the_error_shape(client: TestClient) -> None:
    response = client.get("/sync/no-adapter")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "NoAdapterError raised deep inside, for no-adapter",
            "type": "not_found_error",
            "param": None,
            "code": None,
        }
    }


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("name", list(ERRORS))
def test_each_error_class_gets_its_status_and_message(client: TestClient, kind: str, name: str) -> None:
    cls, status, error_type = ERRORS[name]
    response = client.get(f"/{kind}/{name}")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] == f"{cls.__name__} raised deep inside, for {name}"
    assert error["type"] == error_type


def test_api_error_keeps_its_own_status_and_fields(client: TestClient) -> None:
    response = client.get("/api-error")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "message": "handlers still choose their own status",
        "type": "conflict_error",
        "param": "x",
        "code": None,
    }


def test_other_exceptions_still_reach_the_catch_all_500(client: TestClient) -> None:
    response = client.get("/plain-lookup")
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "internal error (LookupError); see the server log"

"""The Fleet-only gateway: only `POST /v1/fleet/*` is forwarded to the SuperLink."""

from __future__ import annotations

from starlette.testclient import TestClient

from server.gateway import make_app


def test_only_fleet_calls_are_forwarded(pki):
    app = make_app("https://127.0.0.1:1", pki.server.ca, timeout=2)  # nothing listens there
    with TestClient(app) as client:
        for path in (
            "/v1/control/start-run",
            "/v1/control/register-node",
            "/v1/runtime/get-run",
            "/docs",
            "/",
        ):
            assert client.post(path).status_code == 404, path
        assert client.get("/v1/fleet/get-run").status_code in (404, 405)
        reply = client.post("/v1/fleet/get-run", content=b"x")
        assert reply.status_code == 502 and "SuperLink unavailable" in reply.text

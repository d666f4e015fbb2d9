"""Fleet-only TLS gateway in front of the SuperLink.

flwr 1.42 serves the Fleet API (SuperNodes), the Control API (submit / stop runs,
register SuperNode keys) and the runtime API on one HTTPS port, and open-source Flower
has no account authentication on the Control API. Exposed as is, anyone who can reach
the port could register their own node key (defeating SuperNode authentication) or
submit a run, i.e. code, to the server. So `fediqad server` binds the SuperLink to
127.0.0.1 and publishes only this gateway: it terminates TLS with the same server
certificate and forwards `POST /v1/fleet/*` - nothing else - to the SuperLink over
TLS. SuperNode authentication is unaffected (Flower signs each request's timestamp
with the node key; the signature and key travel in headers, which are passed on).

Run as `python -m server.gateway --listen HOST:PORT --upstream-port N --ca CA --cert CERT
--key KEY` (what `fediqad server` does).
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

FLEET_PREFIX = "/v1/fleet/"
# hop-by-hop and length/encoding headers are recomputed on each side
DROP_REQUEST = {
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "te",
}
DROP_RESPONSE = {
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-encoding",
}


def make_app(upstream: str, ca: Path, timeout: float = 600.0) -> Starlette:
    """The gateway application: Fleet calls go through, everything else is 404."""
    context = ssl.create_default_context(cafile=str(ca))
    client = httpx.AsyncClient(
        base_url=upstream, verify=context, timeout=httpx.Timeout(timeout, connect=10.0)
    )

    async def fleet(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP_REQUEST}
        try:
            reply = await client.post(
                request.url.path,
                content=await request.body(),
                headers=headers,
                params=request.query_params,
            )
        except httpx.HTTPError as err:
            return PlainTextResponse(f"SuperLink unavailable: {type(err).__name__}", 502)
        out = {k: v for k, v in reply.headers.items() if k.lower() not in DROP_RESPONSE}
        return Response(reply.content, status_code=reply.status_code, headers=out)

    async def not_exposed(request: Request) -> Response:
        return PlainTextResponse("not exposed: this port serves the Flower Fleet API only", 404)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    routes = [
        Route(FLEET_PREFIX + "{rest:path}", fleet, methods=["POST"]),
        Route(
            "/{rest:path}",
            not_exposed,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        ),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT the hospitals connect to")
    parser.add_argument(
        "--upstream-port", type=int, required=True, help="the SuperLink's port on 127.0.0.1"
    )
    parser.add_argument("--ca", type=Path, required=True, help="CA certificate (upstream)")
    parser.add_argument("--cert", type=Path, required=True, help="server certificate")
    parser.add_argument("--key", type=Path, required=True, help="server private key")
    args = parser.parse_args(argv)
    import uvicorn

    host, _, port = args.listen.rpartition(":")
    app = make_app(f"https://127.0.0.1:{args.upstream_port}", args.ca)
    uvicorn.run(
        app,
        host=host.strip("[]"),
        port=int(port),
        log_level="warning",
        ssl_certfile=str(args.cert),
        ssl_keyfile=str(args.key),
        access_log=False,
    )


if __name__ == "__main__":
    main()

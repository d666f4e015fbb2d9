"""The Flower ServerApp (`[tool.flwr.app.components] serverapp`).

Deployment (`flwr run`, `fediqad server`) reads settings from the run config;
simulation builds the app around a FederationConfig object with `make_server_app`.
A relative `run-dir` in the run config is placed under the server state directory
($FEDIQAD_SERVER_HOME, default ~/.fediqad/server), never under whatever directory the
SuperLink happened to be started from.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.central_eval import make_evaluate_fn
from server.config import FederationConfig, from_user_config
from server.federation import Federation
from shared.errors import UserError
from shared.flower_waits import quick_object_pulls

log = logging.getLogger("fediqad.server")
SERVER_HOME_ENV = "FEDIQAD_SERVER_HOME"


def server_state_dir() -> Path:
    """Where a stock `flwr run` puts runs whose `run-dir` is relative."""
    return Path(os.environ.get(SERVER_HOME_ENV) or Path.home() / ".fediqad" / "server")


def resolve_run_dir(fed: FederationConfig) -> FederationConfig:
    if fed.run_dir.is_absolute():
        return fed
    return fed.model_copy(update={"run_dir": server_state_dir().expanduser() / fed.run_dir})


def run_server(grid: Grid, fed: FederationConfig) -> None:
    """Run (or resume) the federation; a UserError is logged as one line, then re-raised."""
    try:
        federation = Federation(fed, evaluate_fn=make_evaluate_fn(fed))
        if fed.pretrain_rounds:  # CoMCL rounds first: the encoder initialises the backbones
            from server.comcl import pretrain_federation

            pretrain_federation(grid, federation)
        federation.run(grid)
    except UserError as err:
        log.error("fediqad: %s", err)
        raise


def quicken_reply_pulls() -> None:
    """A site's reply is announced before its model arrays are uploaded; Flower's grid
    retries the missing parts after 1, 2, 4 ... 10 s. Retry quickly (shared/flower_waits)."""
    from flwr.superlink.grid import http_grid

    if not quick_object_pulls(http_grid):
        log.warning(
            "this Flower's grid is not the one fediqad was tested with; replies "
            "are pulled with Flower's own 1-10 s retries"
        )


def make_server_app(fed: FederationConfig) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        del context
        run_server(grid, fed)

    return app


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    fed = resolve_run_dir(from_user_config(dict(context.run_config)))
    log.info("fediqad: run directory %s", fed.run_dir)
    quicken_reply_pulls()
    run_server(grid, fed)

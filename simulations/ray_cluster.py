"""The sites of a simulation on a Ray cluster the user runs (`fediqad simulate --ray-address`).

The cluster is someone else's: it was started with `ray start --head` / `ray start
--address` and outlives this run. Here the driver only connects (`ray.init(address=...)`)
and disconnects (`ray.shutdown()`); none of the single-machine start / stop / leftover
killing of `simulations.ray_startup` applies. The server side (strategy, checkpoints,
reports) stays in this process; Flower's Ray backend places one actor per site share
(`client_resources`) on whichever nodes have the CPUs / GPUs.

A node lost mid-round (its raylet killed, the machine gone) ends its actors; the site
whose message was running there gets an error reply, which the server records as a
failed site of that round. Flower 1.42's pool would put the dead actor back and fail
every later message sent to it, so `ClusterRayBackend` drops dead actors instead and
the remaining rounds run on the surviving nodes.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.errors import UserError
from simulations.gpu import SitePlacement, check_gpu_flags
from simulations.ray_startup import one_line

FLAG = "--ray-address"
PROBE_TIMEOUT = 5.0  # seconds to open a TCP connection to the head's GCS port
DEAD_ACTOR_PROBE_TIMEOUT = 30.0
LOST = "the Ray actor running this site was lost"  # how a lost site's error reply begins


def resolve_address(address: str) -> str:
    """HOST:PORT of a cluster that answers; `auto`: RAY_ADDRESS, else the cluster that
    `ray start --head` last started on this machine. A UserError naming --ray-address
    (fast: one TCP connection attempt) when nothing answers there."""
    text = address.strip()
    if text.startswith("ray://"):
        raise UserError(
            f"{FLAG} {address}: Ray Client (ray://) addresses are not supported; give the "
            "head's GCS address HOST:PORT (what `ray start --head` prints, port 6379 by default)"
        )
    if text == "auto":
        found = _auto_address()
        if not found:
            raise UserError(
                f"{FLAG} auto: no Ray cluster found (RAY_ADDRESS is not set and no "
                "`ray start --head` runs on this machine); start one or give HOST:PORT"
            )
        text = found
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(
            f"{FLAG} {address!r}: expected HOST:PORT of the cluster's head "
            "(e.g. 10.0.0.5:6379) or auto"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT):
            pass
    except OSError as err:
        raise UserError(
            f"{FLAG} {address}: no Ray cluster answers at {host}:{port} "
            f"({err.strerror or err}); start one with `ray start --head --port={port}` "
            "or check the address"
        ) from None
    return f"{host}:{port}"


def _auto_address() -> str | None:
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        return env
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:  # none found (Ray's own message speaks of its flags)
        return None
    except Exception as err:  # Ray raises ConnectionError / ValueError here
        raise UserError(f"{FLAG} auto: {one_line(err)}") from None


def attach(address: str, client_resources: dict[str, float], *, verbose: bool = False) -> str:
    """Connect this driver to the cluster at `address` (HOST:PORT); what it offers
    (`describe`). A UserError, disconnected again, if no site fits on any node.

    The actors get this driver's sys.path as PYTHONPATH (as Flower's backend does): on
    a multi-machine cluster the project must be installed at the same path on every
    node (docs/ray-cluster.md)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    pythonpath = os.pathsep.join(p for p in sys.path if p)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{os.environ['PYTHONPATH']}{os.pathsep}{pythonpath}"
    try:
        ray.init(
            address=address,
            runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
            logging_level=logging.INFO if verbose else logging.ERROR,
            log_to_driver=verbose,
        )
    except Exception as err:  # Ray raises ConnectionError / RuntimeError / bare Exception
        raise UserError(f"{FLAG} {address}: could not join the cluster: {one_line(err)}") from None
    try:
        return describe([node for node in ray.nodes() if node.get("Alive")], client_resources)
    except BaseException:
        ray.shutdown()
        raise


def cluster_placement(device: str | None, gpus_per_site: float | None) -> SitePlacement:
    """The sites' device and GPU share on a cluster: a GPU share (`--gpus-per-site`, or
    one whole GPU for `--device cuda`) trains on CUDA wherever Ray places the site;
    otherwise the CPU. Whether a node has the share is checked on joining (`describe`)."""
    check_gpu_flags(device, gpus_per_site)
    if gpus_per_site:
        return SitePlacement("cuda", gpus_per_site, None)
    if device == "cuda":
        return SitePlacement("cuda", 1.0, None)
    return SitePlacement("cpu", 0.0, None)


def describe(nodes: list[dict[str, Any]], client_resources: dict[str, float]) -> str:
    """`2 node(s), 4 CPU, 0 GPU: 4 site(s) at once`, or a UserError if no site fits."""
    from flwr.simulation.ray_transport.ray_actor import pool_size_from_resources

    cpus = sum(node["Resources"].get("CPU", 0.0) for node in nodes)
    gpus = sum(node["Resources"].get("GPU", 0.0) for node in nodes)
    parallel = pool_size_from_resources(client_resources)  # Flower's own count, per node
    if parallel < 1:
        raise UserError(
            f"{FLAG}: no node of the cluster has {client_resources['num_cpus']:g} CPU and "
            f"{client_resources['num_gpus']:g} GPU for one site ({cpus:g} CPU, {gpus:g} GPU "
            "in all); lower --cpus-per-site / --gpus-per-site or add nodes"
        )
    return f"{len(nodes)} node(s), {cpus:g} CPU, {gpus:g} GPU: {parallel} site(s) at once"


def cluster_backend_class() -> type:
    """Flower's RayBackend, but dead actors leave the pool and a message waits for a
    live idle actor (Flower runs one worker thread per actor it started with)."""
    import ray
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    class ClusterRayBackend(RayBackend):  # type: ignore[misc]
        def build(self, app_fn: Callable[..., Any]) -> None:
            super().build(app_fn)
            self._idle = threading.Condition()

        def process_message(self, message: Any, context: Any) -> Any:
            actor = self._take_actor()
            try:
                future = actor.run.remote(
                    self.app_fn, message, str(context.node_config["partition-id"]), context
                )
                _, reply, updated = ray.get(future)
            except ray.exceptions.RayActorError as err:
                self._drop_dead(actor)
                raise SiteActorLost(f"{LOST} (its node or process died): {one_line(err)}") from None
            except BaseException:
                self._give_back(actor)
                raise
            self._give_back(actor)
            return reply, updated

        def _take_actor(self) -> Any:
            with self._idle:
                while not self.pool.pool:
                    if self.pool.num_actors == 0:
                        raise SiteActorLost("every Ray actor of this run was lost")
                    self._idle.wait(timeout=1.0)
                return self.pool.pool.pop()

        def _give_back(self, actor: Any) -> None:
            with self._idle:
                self.pool.pool.append(actor)
                self._idle.notify()

        def _drop_dead(self, actor: Any) -> None:
            """Forget `actor`, and every idle actor that does not answer (same node)."""
            with self._idle:
                idle, self.pool.pool = list(self.pool.pool), []
            alive, dead = [], 1
            for other in idle:
                try:
                    ray.get(other.__ray_ready__.remote(), timeout=DEAD_ACTOR_PROBE_TIMEOUT)
                    alive.append(other)
                except ray.exceptions.RayError:  # RayActorError, GetTimeoutError: not usable
                    dead += 1
            with self._idle:
                self.pool.pool.extend(alive)
                self.pool.num_actors -= dead
                self._idle.notify_all()
            logging.getLogger("fediqad.simulation").warning(
                "%d Ray actor(s) lost (a node or process died); %d left for the sites",
                dead,
                self.pool.num_actors,
            )

    return ClusterRayBackend


class SiteActorLost(RuntimeError):
    """The actor (and so usually the node) that ran a site's message is gone."""


@contextmanager
def cluster_backend() -> Iterator[None]:
    """While a cluster simulation runs, Flower builds `ClusterRayBackend` (its engine
    imports `RayBackend` from this module each time it starts a backend)."""
    import flwr.server.superlink.fleet.vce.backend.raybackend as module

    original = module.RayBackend
    module.RayBackend = cluster_backend_class()
    try:
        yield
    finally:
        module.RayBackend = original

"""The Ray the study runs on, and how many trials it holds at once."""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna
import ray

from hpo.config.spec import ClusterSpec, ResourcesSpec
from hpo.errors import ConfigError


def start_ray(cluster: ClusterSpec) -> bool:
    """Starts a local Ray (or joins ``cluster.address``) unless one is already up; True if we started it."""
    optuna.logging.set_verbosity(optuna.logging.INFO if cluster.verbose else optuna.logging.WARNING)
    if ray.is_initialized():
        return False
    local = cluster.address is None
    try:
        ray.init(
            address=cluster.address or "local",  # a new local Ray, even if another one runs on this machine
            num_cpus=cluster.num_cpus if local else None,
            num_gpus=cluster.num_gpus if local else None,
            include_dashboard=False if local else None,
            logging_level=logging.INFO if cluster.verbose else logging.WARNING,
            log_to_driver=cluster.verbose,
        )
    except ConnectionError as err:
        raise ConfigError("cluster.address", f"cannot join the Ray cluster at {cluster.address!r} "
                                             f"({str(err).splitlines()[0]}); start it (`ray start --head`), "
                                             "fix the address, or run locally with cluster=local") from None
    return True


def fit_to_cluster(resources: ResourcesSpec, max_concurrent: int | None, log: Callable[[str], None] = print) -> int:
    """How many trials run at once: ``study.max_concurrent``, or as many as the live nodes hold.

    Counted per node (a trial never spans nodes), so four 0.25-GPU trials fit a one-GPU node and two
    0.5-CPU trials do not fit two half-free nodes as one. A trial no node can hold is a config error now,
    not a study that waits forever.
    """
    need = {"CPU": resources.cpu, "GPU": resources.gpu}
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    capacity = sum(min(int(res.get(k, 0) / v + 1e-9) for k, v in need.items() if v) for res in nodes)
    if capacity == 0:
        largest = {k: max((res.get(k, 0) for res in nodes), default=0) for k in need}
        key = "resources.gpu" if resources.gpu > largest["GPU"] else "resources.cpu"
        raise ConfigError(key, f"a trial needs {resources.cpu:g} CPU and {resources.gpu:g} GPU but the largest "
                               f"node has {largest['CPU']:g} CPU and {largest['GPU']:g} GPU; lower {key} or add "
                               "bigger nodes")
    running = max_concurrent or capacity
    log(f"cluster: {len(nodes)} node(s), room for {capacity} trial(s) at {resources.cpu:g} CPU + "
        f"{resources.gpu:g} GPU each; running up to {running} at once")
    return running

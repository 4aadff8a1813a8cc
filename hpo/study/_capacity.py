"""The Ray the study runs on, and how many trials it holds at once."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import optuna
import ray
from ray.util.state import list_nodes
from ray.util.state.exception import RayStateApiException

from hpo.config.spec import ClusterSpec, ResourcesSpec
from hpo.errors import ConfigError

# Where Ray's State API clients look first for the API server (ray.dashboard.utils.get_address_for_submission_client)
RAY_API_SERVER_ADDRESS = "RAY_API_SERVER_ADDRESS"


def start_ray(cluster: ClusterSpec, state_api: bool = False) -> bool:
    """Starts a local Ray (or joins ``cluster.address``) unless one is already up; True if we started it.

    ``state_api``: a study of DDP groups needs Ray's State API (served by the dashboard, which a local Ray
    otherwise goes without): Ray Train's ``PlacementGroupCleaner`` asks it whether a group's controller still
    lives, and a group trial that ASHA stops is killed with its controller, so only the cleaner frees the
    group's workers for the next trial (ray-project/ray#54305). Without it the next group waits forever."""
    optuna.logging.set_verbosity(optuna.logging.INFO if cluster.verbose else optuna.logging.WARNING)
    started = not ray.is_initialized()
    api = _init(cluster, state_api) if started else None
    if state_api and not _state_api_answers(api):
        if started:
            ray.shutdown()
        where = f"the Ray cluster at {cluster.address!r}" if cluster.address else "this process's Ray"
        raise ConfigError("resources.workers_per_trial", f"{where} answers no State API (no dashboard), which Ray "
                                                         "Train needs to free a stopped group trial's workers; start "
                                                         "its head with `ray start --head --include-dashboard=true`, "
                                                         "or set workers_per_trial=1")
    return started


def _init(cluster: ClusterSpec, state_api: bool) -> str | None:
    """``ray.init``; the State API's URL when ``state_api`` and the cluster serves one (else None)."""
    local = cluster.address is None
    # hpo starts a new local Ray per study, so a machine may run several: each one's processes are told their own
    # State API (Ray's clients otherwise search for it, and refuse to guess among several instances); a cluster
    # joined is told its cluster.dashboard_url when given (else its head finds its own)
    port = free_port() if local and state_api else None
    told = f"http://127.0.0.1:{port}" if port else _http(cluster.dashboard_url) if state_api else None
    env = {"env_vars": {RAY_API_SERVER_ADDRESS: told}} if told else None
    try:
        context = ray.init(
            address=cluster.address or "local",  # a new local Ray, even if another one runs on this machine
            num_cpus=cluster.num_cpus if local else None,
            num_gpus=cluster.num_gpus if local else None,
            include_dashboard=state_api if local else None,
            dashboard_port=port,
            runtime_env=env,
            logging_level=logging.INFO if cluster.verbose else logging.WARNING,
            log_to_driver=cluster.verbose,
        )
    except ConnectionError as err:
        raise ConfigError("cluster.address", f"cannot join the Ray cluster at {cluster.address!r} "
                                             f"({str(err).splitlines()[0]}); start it (`ray start --head`), "
                                             "fix the address, or run locally with cluster=local") from None
    return _http(context.dashboard_url or cluster.dashboard_url) if state_api else None


def _http(url: str | None) -> str | None:
    return None if not url else url if "://" in url else f"http://{url}"


def free_port() -> int:
    """A TCP port nothing listens on now, for the dashboard of a local Ray."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _state_api_answers(url: str | None) -> bool:
    """Whether the State API at ``url`` (None: Ray's own search for it) lists the cluster's nodes."""
    try:
        list_nodes(address=url, limit=1, timeout=30)
    except (RayStateApiException, ConnectionError):  # no dashboard, or none Ray can pick among several
        return False
    return True


def fit_to_cluster(resources: ResourcesSpec, max_concurrent: int | None, log: Callable[[str], None] = print) -> int:
    """How many trials run at once on the live nodes (:func:`trials_at_once`); said in the log."""
    running, said = trials_at_once([node["Resources"] for node in ray.nodes() if node["Alive"]], resources,
                                   max_concurrent)
    log(said)
    return running


def trials_at_once(nodes: list[dict[str, float]], resources: ResourcesSpec,
                   max_concurrent: int | None) -> tuple[int, str]:
    """``study.max_concurrent``, or as many trials as ``nodes`` (each one's resources) hold; and a line saying so.

    Counted per node (a one-worker trial never spans nodes), so four 0.25-GPU trials fit a one-GPU node and two
    0.5-CPU trials do not fit two half-free nodes as one; a DDP group's workers are counted over the cluster, and
    no more groups run than it holds (the rest would wait for workers). A trial no node (or group the cluster) can
    hold is a config error now, not a study that waits forever.

    >>> spec = ResourcesSpec(cpu=1, gpu=0, reuse_workers=True, workers_per_trial=2)
    >>> trials_at_once([{"CPU": 1}, {"CPU": 1}], spec, None)[0]  # one group, across two nodes
    1
    """
    need = {"CPU": resources.cpu, "GPU": resources.gpu}
    capacity = sum(min(int(res.get(k, 0) / v + 1e-9) for k, v in need.items() if v) for res in nodes)
    each = f"{resources.cpu:g} CPU + {resources.gpu:g} GPU each"
    if (group := resources.workers_per_trial) > 1:  # a group's workers may span nodes; its trial holds no CPU
        if capacity < group:
            raise ConfigError("resources.workers_per_trial", f"{group} workers of {each}, but the cluster's "
                                                             f"{len(nodes)} node(s) hold {capacity} such workers; "
                                                             "lower it, lower resources.cpu, or add nodes")
        running = min(max_concurrent or capacity // group, capacity // group)
        return running, (f"cluster: {len(nodes)} node(s), room for {capacity} worker(s) at {each}: "
                         f"{capacity // group} trial(s) of {group} workers; running up to {running} at once")
    if capacity == 0:
        largest = {k: max((res.get(k, 0) for res in nodes), default=0) for k in need}
        key = "resources.gpu" if resources.gpu > largest["GPU"] else "resources.cpu"
        raise ConfigError(key, f"a trial needs {resources.cpu:g} CPU and {resources.gpu:g} GPU but the largest "
                               f"node has {largest['CPU']:g} CPU and {largest['GPU']:g} GPU; lower {key} or add "
                               "bigger nodes")
    running = max_concurrent or capacity
    return running, (f"cluster: {len(nodes)} node(s), room for {capacity} trial(s) at {each}; running up to "
                     f"{running} at once")

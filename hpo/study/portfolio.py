"""``search.first_trial=portfolio``: a new study first evaluates a short list of configs learned from the benchmark
suite's recorded studies (greedy portfolio construction over eight datasets, ``bench/suite/portfolio.py``), which
then its sampler continues from: they are real trials that TPE learns from. The list ships with the package
(``portfolio.json``, with the command that rebuilds it); ``search.portfolio_file`` names one of your own in its
format: your team's known-good configs, best first, or the suite's builder's output over tables recorded again.

Each entry names the model it was recorded with. A single-model study gets the hyperparameters of the portfolio
learned from one model's configs (``portfolio``); a study that searches the model gets the portfolio learned over
every recorded model (``models``: which model first, and with what), its choices' entries. Values outside the
study's own space are moved to its nearest point (a range's bound, the closest numeric choice), so a narrowed space
still starts from the portfolio's direction::

    >>> from hpo.config.search_space import SearchSpace
    >>> space = SearchSpace.from_config({"learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
    ...                                  "batch_size": {"choices": [16, 32]}}, num_layers=6)
    >>> fit_into(space, {"model": "minilm_l6", "learning_rate": 3e-4, "batch_size": 64})
    {'learning_rate': 0.0001, 'batch_size': 32}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.config.search_space import MODEL, SearchSpace, trainer_name
from hpo.config.sections import DISTILL_SETTINGS
from hpo.config.spec import StudySpec
from hpo.errors import ConfigError

PORTFOLIO_FILE = Path(__file__).with_name("portfolio.json")
IMAGE_TASKS = ("image_classification",)
METHOD = "method"
KEY = "search.portfolio_file"
KINDS = ("portfolio", "models")  # the file's two lists: for a study of one model, and for one that searches it
FORMAT = ('write it as hpo/study/portfolio.json is written: {"portfolio": {"text": [{"learning_rate": 5e-05, ...}, '
          '...], "image": [...]}, "models": {"text": [{"model": "mpnet_base", ...}, ...]}}')


def portfolio(searches_model: bool = False, path: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """The portfolio in ``path`` (None: the shipped one): modality ("text", "image") -> entries, best first;
    ``searches_model``: the one learned over every recorded model, ordered by gain per unit of cost. A file that
    cannot serve is a :class:`ConfigError` on ``search.portfolio_file``, before the study records anything."""
    path = path or PORTFOLIO_FILE
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(KEY, f"{path}: cannot be read as a portfolio ({err}); {FORMAT}") from None
    lists = content.get(KINDS[1] if searches_model else KINDS[0]) if isinstance(content, dict) else None
    if not isinstance(lists, dict) or not all(isinstance(entries, list) and all(isinstance(e, dict) for e in entries)
                                              for entries in lists.values()):
        raise ConfigError(KEY, f"{path}: its {KINDS[1] if searches_model else KINDS[0]!r} is no mapping of modality "
                               f"to a list of configs; {FORMAT}")
    return lists


def portfolio_points(spec: StudySpec) -> list[dict[str, Any]]:
    """The study's first trials from the portfolio (distinct, in the portfolio's order); in a study that searches
    the model, then the centre of each chosen model the portfolio has no entry for, so every model is tried once
    (as ``first_trial=midpoint`` would) before the sampler chooses among them."""
    models = spec.space.distributions.get(MODEL)
    choices = models.choices if isinstance(models, CategoricalDistribution) else None
    modality = "image" if spec.task in IMAGE_TASKS else "text"
    entries = portfolio(choices is not None, spec.study.portfolio_file).get(modality)
    if not entries:
        raise ConfigError(KEY, f"{spec.study.portfolio_file or PORTFOLIO_FILE}: holds no {modality} configs for "
                               f"task={spec.task}; add some, or drop {KEY} for the shipped portfolio")
    points: list[dict[str, Any]] = []
    for entry in entries:
        if choices is not None and entry.get(MODEL) not in choices:
            continue
        point = fit_into(spec.space, entry)
        if point not in points:
            points.append(point)
    if choices is None:
        return points
    known = {point[MODEL] for point in points}
    return points + [centre for centre in spec.space.midpoints() if centre[MODEL] not in known]


def fit_into(space: SearchSpace, entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` (trainer names, and the model it was recorded with) as a point of ``space``: its names (per model
    where the space has them), its values moved inside; a distillation setting is left to the sampler."""
    model = entry.get(MODEL) if MODEL in space.distributions else None
    method = _method(space, entry)
    point: dict[str, Any] = {}
    for name in space.applicable(method, model):
        if name in DISTILL_SETTINGS:  # learnt without a teacher, the portfolio knows nothing of them: the sampler
            continue                  # draws them, rather than every first trial sitting at one centre
        if name in (MODEL, METHOD):
            point[name] = model if name == MODEL else method
            continue
        dist = space.distributions[name]
        point[name] = _inside(dist, entry.get(trainer_name(name)))
    return point


def _method(space: SearchSpace, entry: Mapping[str, Any]) -> str | None:
    """The fine-tuning method of ``entry`` when the space searches it (``search=methods``): the entry's own, or for the
    suite's plain fine-tuning configs, ``freeze`` when they freeze blocks and ``full`` when not (the other of the two
    when only one is searched); the space's middle choice when it has neither (its parameters start at their
    centres)."""
    dist = space.distributions.get(METHOD)
    if not isinstance(dist, CategoricalDistribution):
        return None
    wanted = [entry.get(METHOD), "freeze" if entry.get("freeze_depth") else "full", "full", "freeze"]
    return next((m for m in wanted if m in dist.choices), _inside(dist, None))


def _inside(dist, value: Any) -> Any:
    if isinstance(dist, CategoricalDistribution):
        if value in dist.choices:
            return value
        numeric = [c for c in dist.choices if isinstance(c, int | float) and not isinstance(c, bool)]
        if numeric and isinstance(value, int | float):
            return min(numeric, key=lambda c: abs(c - value))
        return dist.choices[len(dist.choices) // 2]
    assert isinstance(dist, FloatDistribution | IntDistribution)
    if value is None:
        value = (dist.low + dist.high) / 2
    value = min(max(value, dist.low), dist.high)
    if dist.step:  # onto the range's grid
        value = min(dist.low + round((value - dist.low) / dist.step) * dist.step, dist.high)
    return int(round(value)) if isinstance(dist, IntDistribution) else float(value)

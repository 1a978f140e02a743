"""BOHB's configuration sampler, vectorised: hpbandster's algorithm without its per-sample overhead.

hpbandster's BOHB config generator fits two statsmodels ``KDEMultivariate`` models per budget
(the good and the bad observations) and proposes a configuration by drawing ``num_samples``
candidates around good observations, one scalar ``scipy.stats.truncnorm.rvs`` call and two
single-point ``pdf`` calls per candidate. With a thousand observations that is tens of
milliseconds per configuration, and once 16 or more workers run 1-epoch jobs the master spends
its time there instead of dispatching.

:class:`VectorizedBOHB` is the same algorithm with arrays:

* the same good/bad split (``top_n_percent``, ``min_points_in_model``), the same imputation of
  inactive (conditional) values, and the bandwidths of statsmodels' ``normal_reference`` rule
  (``1.06 * std * n ** (-1 / (4 + d))``), clipped at ``min_bandwidth``;
* the same random fraction (drawn first, exactly where hpbandster draws it), the same candidate
  generation: a good observation chosen uniformly, continuous values from a normal truncated to
  [0, 1] with ``bandwidth_factor`` times the bandwidth, categorical values kept with probability
  ``1 - bandwidth`` and otherwise uniform over the choices (Aitchison-Aitken style);
* the same acquisition: the candidate with the smallest ``max(g, 1e-32) / max(l, 1e-32)``, and
  hpbandster's tie-breaks (the first minimum; a candidate the bad model cannot score but the good
  one can wins at once);
* the density of a product kernel (Gaussian for continuous, Aitchison-Aitken for categorical with
  the number of levels seen in the data, statsmodels' convention), for all candidates against all
  observations in one broadcast.

The random draws come from the sampler's own ``RandomState`` (``rng``), which the master reseeds
for every sampling and every model fit (:meth:`VectorizedBOHB.reseed`), so sampling is
reproducible and a replayed journal rebuilds the same models, while numpy's global RNG, which
belongs to whoever hosts the study, is left alone. A legacy ``RandomState`` reseeded with a value
draws exactly what numpy's global RNG draws after ``np.random.seed(value)``: studies sample what
they sampled when this sampler used the global RNG. The draws are made in a different order from
hpbandster's (in blocks, not candidate by candidate), so both samplers propose from the same
distribution but not the same sequence.

One deliberate difference: hpbandster's imputation loop (``while np.any(nan_indices)``) stops
when the only inactive value left is in column 0, leaving a NaN that turns its whole KDE into
NaN (every later proposal then falls back to random). Here every inactive value is imputed.
"""

from __future__ import annotations

import logging
from typing import Any

import ConfigSpace
import ConfigSpace.util
import numpy as np
from ConfigSpace.hyperparameters import FloatHyperparameter
from ConfigSpace.hyperparameters.hp_components import ROUND_PLACES
from hpbandster.core.base_config_generator import base_config_generator
from hpbandster.optimizers.config_generators.bohb import BOHB as HpBandSterBOHB
from scipy import special

logger = logging.getLogger(__name__)

SAMPLERS = ("vectorized", "hpbandster")
_TINY = 1e-32  # hpbandster's floor on both densities in the acquisition ratio


def normal_reference_bandwidth(data: np.ndarray) -> np.ndarray:
    """statsmodels' ``normal_reference`` rule: ``1.06 * std * n ** (-1 / (4 + d))`` per column."""
    n, d = data.shape
    return 1.06 * np.std(data, axis=0) * n ** (-1.0 / (4 + d))


class ProductKDE:
    """A product-kernel density over hpbandster's unit-cube encoding, evaluated for many points at once.

    Matches statsmodels' ``KDEMultivariate(var_type='c...u...', bw=...)``: Gaussian kernels for
    continuous columns, Aitchison-Aitken kernels for categorical ones (``1 - h`` on the observed
    level, ``h / (c - 1)`` elsewhere, ``c`` the number of distinct levels in the data), the
    product divided by the continuous bandwidths, averaged over the observations.

    The whole product is one exponential of one matrix product: ``-|p - x|^2 / 2`` expands to
    ``p.x - |p|^2 / 2 - |x|^2 / 2`` (coordinates centred on the data, so that the expansion
    loses nothing measurable), and each categorical factor is ``log(other)`` plus
    ``log(same / other)`` times a one-hot match. Degenerate categorical kernels (a bandwidth of
    1 or more, or a single level in the data, where statsmodels divides by zero) take the
    direct product instead, with statsmodels' infinities and NaNs.
    """

    def __init__(self, data: np.ndarray, vartypes: np.ndarray, min_bandwidth: float) -> None:
        self.data = np.asarray(data, dtype=float)
        self.bw = np.clip(normal_reference_bandwidth(self.data), min_bandwidth, None)
        vartypes = np.asarray(vartypes, dtype=int)
        self.continuous = vartypes == 0
        scaled = self.data[:, self.continuous] / self.bw[self.continuous]
        self._centre = scaled.mean(axis=0) if len(scaled) else np.zeros(scaled.shape[1])
        self._cont_data = scaled - self._centre
        self._cont_norms = np.einsum("nd,nd->n", self._cont_data, self._cont_data)
        self._norm = np.prod(self.bw[self.continuous]) * len(self.data) * (2 * np.pi) ** (self.continuous.sum() / 2)
        self._categorical: list[tuple[int, int, float, float]] = []
        with np.errstate(divide="ignore"):
            for column in np.flatnonzero(~self.continuous):
                h = self.bw[column]
                levels = np.unique(self.data[:, column]).size
                self._categorical.append((column, int(vartypes[column]), 1 - h, h / (levels - 1)))
        self._fast = all(same > 0 and 0 < other < np.inf for _, _, same, other in self._categorical) and all(
            self._valid_levels(self.data[:, column], choices) for column, choices, _, _ in self._categorical
        )
        if self._fast:
            weighted = [self._one_hot(self.data[:, c], k) * (np.log(s) - np.log(o)) for c, k, s, o in self._categorical]
            self._features = np.concatenate([self._cont_data, *weighted], axis=1)
            self._bias = -0.5 * self._cont_norms + sum(np.log(o) for _, _, _, o in self._categorical)

    @staticmethod
    def _valid_levels(values: np.ndarray, choices: int) -> bool:
        return bool(np.all((values == np.rint(values)) & (values >= 0) & (values < choices)))

    @staticmethod
    def _one_hot(values: np.ndarray, choices: int) -> np.ndarray:
        return np.eye(choices)[values.astype(int)]

    def pdf(self, points: np.ndarray, trusted: bool = False) -> np.ndarray:
        """Densities of ``points`` (shape (m, d), or one point of shape (d,)).

        ``trusted``: the categorical values are known to be valid choice indices (the sampler's
        own candidates), so the check is skipped.
        """
        points = np.asarray(points, dtype=float)
        single = points.ndim == 1
        points = np.atleast_2d(points)
        scaled = points[:, self.continuous] / self.bw[self.continuous] - self._centre
        half_norms = 0.5 * np.einsum("md,md->m", scaled, scaled)[:, None]
        if self._fast and (trusted or all(self._valid_levels(points[:, c], k) for c, k, _, _ in self._categorical)):
            features = np.concatenate(
                [scaled, *(self._one_hot(points[:, c], k) for c, k, _, _ in self._categorical)], axis=1
            )
            kernel = np.exp(np.minimum(features @ self._features.T + self._bias[None, :] - half_norms, 0.0))
        else:
            squared = 2.0 * half_norms + self._cont_norms[None, :] - 2.0 * (scaled @ self._cont_data.T)
            kernel = np.exp(-0.5 * np.maximum(squared, 0.0))
            with np.errstate(invalid="ignore"):
                for column, _, same, other in self._categorical:
                    match = self.data[:, column][None, :] == points[:, column][:, None]
                    kernel = kernel * np.where(match, same, other)
        density = kernel.sum(axis=1) / self._norm
        return density[0] if single else density


class VectorizedBOHB(HpBandSterBOHB):
    """hpbandster's BOHB config generator with vectorised model fitting and sampling (see the module docs)."""

    def __init__(self, *args: Any, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = np.random.RandomState(seed)

    def reseed(self, value: int) -> None:
        """Restart the sampler's draws from ``value`` (the stream of ``np.random.seed(value)``)."""
        self.rng.seed(value)

    def new_result(self, job: Any, update_model: bool = True) -> None:
        base_config_generator.new_result(self, job)
        if job.result is None or not np.isfinite(job.result["loss"]):
            loss = np.inf  # crashed or non-numeric results count as bad, as in hpbandster
        else:
            loss = job.result["loss"]
        budget = job.kwargs["budget"]
        self.configs.setdefault(budget, [])
        self.losses.setdefault(budget, [])
        if max(list(self.kde_models.keys()) + [-np.inf]) > budget:
            return  # a model on a larger budget exists already: this budget's is never used again
        self.configs[budget].append(ConfigSpace.Configuration(self.configspace, job.kwargs["config"]).get_array())
        self.losses[budget].append(loss)
        if len(self.configs[budget]) <= self.min_points_in_model - 1 or not update_model:
            return
        self._fit(budget)

    def _fit(self, budget: float) -> None:
        configs = np.array(self.configs[budget])
        losses = np.array(self.losses[budget])
        n = configs.shape[0]
        n_good = max(self.min_points_in_model, (self.top_n_percent * n) // 100)
        n_bad = max(self.min_points_in_model, ((100 - self.top_n_percent) * n) // 100)
        order = np.argsort(losses)
        good = self.impute_conditional_data(configs[order[:n_good]])
        bad = self.impute_conditional_data(configs[order[n_good : n_good + n_bad]])
        if good.shape[0] <= good.shape[1] or bad.shape[0] <= bad.shape[1]:
            return
        self.kde_models[budget] = {
            "good": ProductKDE(good, self.vartypes, self.min_bandwidth),
            "bad": ProductKDE(bad, self.vartypes, self.min_bandwidth),
        }

    def impute_conditional_data(self, array: np.ndarray) -> np.ndarray:
        """Fill inactive values from observations where they are active, as hpbandster does, by rounds.

        hpbandster, row by row: take the row's first inactive column, copy all of the row's
        inactive values from a random observation where that column is active, repeat until
        none is left (a column active nowhere gets a random valid value). Here each round does
        that step for all rows at once, grouped by their first inactive column: the same
        distribution, without a Python loop over rows.
        """
        result = np.array(array, dtype=float, copy=True)
        if result.size == 0:
            return result
        original = np.asarray(array, dtype=float)
        for _ in range(result.shape[1] + 1):
            missing = np.isnan(result)
            rows = np.flatnonzero(missing.any(axis=1))
            if not rows.size:
                break
            first = missing[rows].argmax(axis=1)
            for column in np.unique(first):
                group = rows[first == column]
                donors = np.flatnonzero(np.isfinite(original[:, column]))
                if donors.size:
                    chosen = donors[self.rng.randint(donors.size, size=group.size)]
                    patch = missing[group]
                    result[group] = np.where(patch, original[chosen], result[group])
                elif self.vartypes[column] == 0:
                    result[group, column] = self.rng.rand(group.size)
                else:
                    result[group, column] = self.rng.randint(self.vartypes[column], size=group.size)
        return result

    def get_config(self, budget: float) -> tuple[dict[str, Any], dict[str, Any]]:
        info: dict[str, Any] = {}
        if not self.kde_models or self.rng.rand() < self.random_fraction:
            info["model_based_pick"] = False
            return self._random_configuration(), info
        try:
            vector = self._best_candidate()
        except Exception:
            logger.warning("model-based sampling failed; using a random configuration", exc_info=True)
            vector = None
        if vector is None:
            info["model_based_pick"] = False
            return self._random_configuration(), info
        for index, kind in enumerate(self.vartypes):
            if kind:
                vector[index] = np.rint(vector[index])
        try:
            sample = self.vector_to_config(vector)
        except Exception as exc:
            logger.warning("cannot convert the model's proposal %s (%s); using a random configuration", vector, exc)
            info["model_based_pick"] = False
            return self._random_configuration(), info
        info["model_based_pick"] = True
        return sample, info

    def vector_to_config(self, vector: np.ndarray) -> dict[str, Any]:
        """The configuration of a unit-cube vector, inactive hyperparameters left out.

        What hpbandster gets from ``Configuration(vector=...)`` and
        ``deactivate_inactive_hyperparameters``, at a fraction of their cost: conditions are
        checked in the space's (topological) order, so a child of an inactive parent is
        inactive too. Spaces with forbidden clauses take ConfigSpace's own path, which checks them.
        """
        space = self.configspace
        if space.forbidden_clauses:
            return dict(ConfigSpace.util.deactivate_inactive_hyperparameters(None, space, vector=np.asarray(vector)))
        vector = np.array(vector, dtype=float)
        hyperparameters = list(space.values())
        for index, hyperparameter in enumerate(hyperparameters):
            conditions = space.parent_conditions_of[hyperparameter.name]
            if conditions and not all(condition.satisfied_by_vector(vector) for condition in conditions):
                vector[index] = np.nan
        config = {}
        for index, hyperparameter in enumerate(hyperparameters):
            if not np.isnan(vector[index]):
                value = hyperparameter.to_value(vector[index])
                if isinstance(hyperparameter, FloatHyperparameter):  # as ConfigSpace's Configuration does
                    value = float(np.round(value, ROUND_PLACES))
                config[hyperparameter.name] = value
        return config

    def candidates(self, kde_good: ProductKDE) -> np.ndarray:
        """``num_samples`` proposals around good observations (hpbandster's local search, in one go)."""
        count, (_, dims) = self.num_samples, kde_good.data.shape
        centres = kde_good.data[self.rng.randint(0, len(kde_good.data), size=count)]
        bandwidth = np.maximum(kde_good.bw, self.min_bandwidth)
        vectors = np.empty((count, dims))
        continuous = self.vartypes == 0
        if continuous.any():
            vectors[:, continuous] = truncated_normal(
                centres[:, continuous],
                self.bw_factor * np.broadcast_to(bandwidth[continuous], (count, continuous.sum())),
                self.rng,
            )
        for column in np.flatnonzero(~continuous):
            keep = self.rng.rand(count) < (1 - bandwidth[column])
            uniform = self.rng.randint(self.vartypes[column], size=count)
            vectors[:, column] = np.where(keep, np.trunc(centres[:, column]), uniform)
        return vectors

    def _best_candidate(self) -> np.ndarray | None:
        model = self.kde_models[max(self.kde_models)]
        vectors = self.candidates(model["good"])
        good = model["good"].pdf(vectors, trusted=True)
        bad = model["bad"].pdf(vectors, trusted=True)
        # hpbandster's max(1e-32, g) / max(l, 1e-32), NaN handling included
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(bad > _TINY, bad, _TINY) / np.where(_TINY > good, _TINY, good)
        unscorable = ~np.isfinite(ratio) & np.isfinite(good)
        if unscorable.any():  # hpbandster takes the first such candidate at once
            return vectors[np.argmax(unscorable)]
        finite = np.where(np.isfinite(ratio), ratio, np.inf)
        best = int(np.argmin(finite))
        return vectors[best] if finite[best] < np.inf else None

    def _random_configuration(self) -> dict[str, Any]:
        """A draw from the prior. ConfigSpace 1.x samples only active values, so hpbandster's
        ``deactivate_inactive_hyperparameters`` on it would change nothing (and costs as much)."""
        return dict(self.configspace.sample_configuration())


def truncated_normal(mean: np.ndarray, scale: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Draws from normals truncated to [0, 1], by inverting the CDF (uniforms from ``rng``).

    ``scipy.stats.truncnorm`` gives the same distribution; this is its arithmetic without the
    per-call overhead. Every mean lies in [0, 1], so each interval contains the mode and the
    inversion stays accurate (no interval lies far out in one tail).
    """
    lower = special.ndtr((0.0 - mean) / scale)
    upper = special.ndtr((1.0 - mean) / scale)
    uniform = rng.rand(*np.shape(mean))
    draws = mean + scale * special.ndtri(lower + uniform * (upper - lower))
    return np.clip(draws, 0.0, 1.0)

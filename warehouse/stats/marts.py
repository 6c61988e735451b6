"""The warehouse's computed marts as functions of plain frames.

dbt's Python models hand their refs to these functions; tests call the same functions, so
nothing is computed in two places. Outputs are Arrow tables with fixed schemas, so an empty
result still has typed columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from warehouse import dbt_vars
from warehouse.stats import arrow, correlations, embedding


@dataclass(frozen=True)
class MartInputs:
    profiles: pd.DataFrame  # fct_concept_profiles: model, concept, category, n_units, weight
    models: pd.DataFrame  # dim_models
    benchmarks: pd.DataFrame | None = None  # fct_task_benchmarks
    n_components: int = 3
    n_categories: int | str = 3
    agreement: pd.DataFrame | None = None  # fct_similarity_agreement (build notes only)
    match_agreement: pd.DataFrame | None = None  # fct_unit_match_agreement (build notes only)
    runs: pd.DataFrame | None = None  # stg_runs (build notes only: which runs kept fold tallies)


def inputs(
    n_components: Any,
    n_categories: Any,
    profiles: pd.DataFrame,
    models: pd.DataFrame,
    benchmarks: pd.DataFrame | None = None,
    agreement: pd.DataFrame | None = None,
    match_agreement: pd.DataFrame | None = None,
    runs: pd.DataFrame | None = None,
) -> MartInputs:
    """MartInputs from a dbt Python model's refs and its (text) config values."""
    return MartInputs(
        profiles=profiles,
        models=models,
        benchmarks=benchmarks,
        agreement=agreement,
        match_agreement=match_agreement,
        runs=runs,
        n_components=int(dbt_vars.from_dbt("n_components", n_components)),
        n_categories=dbt_vars.from_dbt("n_categories", n_categories),
    )


def embedding_profiles(inputs: MartInputs) -> embedding.Profiles:
    """Profiles of the models in the embedding; columns are every concept seen in any model."""
    keep = set(inputs.models.loc[inputs.models["in_embedding"].astype(bool), "model"])
    rows = inputs.profiles[inputs.profiles["model"].isin(keep)]
    return embedding.profile_matrix(rows, concepts=inputs.profiles[["concept", "category"]])


def _fit(inputs: MartInputs) -> tuple[embedding.Profiles, embedding.PcaFit]:
    profiles = embedding_profiles(inputs)
    return profiles, embedding.fit_pca(profiles.matrix, int(inputs.n_components))


def fct_lce(inputs: MartInputs) -> pa.Table:
    profiles, fit = _fit(inputs)
    rows = [
        (model, component + 1, float(fit.scores[i, component]))
        for i, model in enumerate(profiles.models)
        for component in range(fit.scores.shape[1])
    ]
    return arrow.table(
        rows, [("model", pa.string()), ("component", pa.int32()), ("value", pa.float64())]
    )


def fct_lce_components(inputs: MartInputs) -> pa.Table:
    _, fit = _fit(inputs)
    ratios = fit.explained_variance_ratio
    rows = [(i + 1, float(r), float(ratios[: i + 1].sum())) for i, r in enumerate(ratios.tolist())]
    return arrow.table(
        rows,
        [
            ("component", pa.int32()),
            ("explained_variance_ratio", pa.float64()),
            ("cumulative_explained_variance_ratio", pa.float64()),
        ],
    )


def fct_component_loadings(inputs: MartInputs) -> pa.Table:
    profiles, fit = _fit(inputs)
    rows = [
        (c + 1, concept, category, float(fit.components[c, j]))
        for c in range(fit.components.shape[0])
        for j, (concept, category) in enumerate(
            zip(profiles.concepts, profiles.categories, strict=True)
        )
    ]
    return arrow.table(
        rows,
        [
            ("component", pa.int32()),
            ("concept", pa.string()),
            ("category", pa.string()),
            ("loading", pa.float64()),
        ],
    )


def dim_model_categories(inputs: MartInputs) -> pa.Table:
    """k-means on the profiles; ids 1..k ordered by the category's mean first-component score.

    k is capped at the number of distinct profiles (``embedding.categorise``); fct_build_notes
    says so when it is.
    """
    profiles, fit = _fit(inputs)
    categories = embedding.categorise(profiles.matrix, inputs.n_categories)
    ids = embedding.order_by_score(categories.labels, fit.scores)
    k = categories.k
    rows = [
        (m, int(i), f"C{int(i)}", k) for m, i in zip(profiles.models, ids.tolist(), strict=True)
    ]
    return arrow.table(
        rows,
        [
            ("model", pa.string()),
            ("category_id", pa.int32()),
            ("category_label", pa.string()),
            ("n_categories", pa.int32()),
        ],
    )


def fct_component_task_correlations(
    inputs: MartInputs, settings: correlations.Settings | None = None
) -> pa.Table:
    """Each component against each task result over the models that have both: Pearson r and p,
    Spearman, a bootstrap interval and BH q (computed in warehouse.stats.correlations, shared by the
    category and concept marts)."""
    profiles, fit = _fit(inputs)
    scores = pd.DataFrame(
        fit.scores,
        index=pd.Index(profiles.models, name="model"),
        columns=list(range(1, fit.scores.shape[1] + 1)),
    )
    return correlations.component_task_table(
        scores, inputs.benchmarks, settings or correlations.Settings()
    )


def fct_model_distances(inputs: MartInputs) -> pa.Table:
    """Cosine distance between the profiles of every pair of profiled models (both orders)."""
    profiled = inputs.models[inputs.models["n_interpretable_units"] > 0]["model"]
    rows_in = inputs.profiles[inputs.profiles["model"].isin(set(profiled))]
    profiles = embedding.profile_matrix(rows_in, concepts=inputs.profiles[["concept", "category"]])
    distances = embedding.cosine_distances(profiles.matrix)
    rows = [
        (a, b, float(distances[i, j]))
        for i, a in enumerate(profiles.models)
        for j, b in enumerate(profiles.models)
        if i != j
    ]
    return arrow.table(
        rows,
        [("model_a", pa.string()), ("model_b", pa.string()), ("cosine_distance", pa.float64())],
    )

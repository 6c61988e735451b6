"""What a build could not compute, or had to cap, and why: the rows of ``fct_build_notes``.

Small and degenerate studies (one model, two checkpoints with identical profiles, fewer models
than components or categories, a model with no interpretable unit) build without error, but
some numbers do not exist for them. The marts leave those numbers out instead of publishing
NaN or float dust; this module says, in one plain sentence per decision, what was left out and
why. ``lce build`` and ``lce summary`` print the sentences and the Embedding page shows them.

The decisions themselves are made in ``warehouse.stats.embedding`` (``fit_pca``'s rank, ``categorise``'s
cap, ``warehouse.stats.inference``' minimum of three points); the sentences are derived from the same results,
so they cannot disagree with the marts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.stats import arrow, embedding, fold_embedding, folds, inference, marts
from warehouse.stats.wording import join, plural

MIN_CORRELATION_MODELS = inference.MIN_POINTS  # r and p are undefined (null) below this
# A 95% interval's tails hold 2.5% of the draws each. With n models, a draw holds at most two
# distinct models (r = +-1 or none) with probability (C(n, 2) (2^n - 2) + n) / n^n: 26% for 4
# models, 9.8% for 5, 2.0% for 6. Below the first n where that share is under 2.5%, the interval's
# ends are set by those degenerate draws.
BOOTSTRAP_TAIL = 0.025
# A permutation p over n models cannot be below 1 / n!: 3 models (6 relabellings) never reach
# 0.05, 4 models (24) can.
MANTEL_ALPHA = 0.05


def degenerate_share(n: int) -> float:
    """Share of the n^n bootstrap draws of n models that hold at most two distinct models."""
    return (math.comb(n, 2) * (2**n - 2) + n) / n**n


def min_bootstrap_models() -> int:
    """The fewest models whose degenerate draws fit inside one tail of a 95% interval (6)."""
    return next(n for n in range(3, 100) if degenerate_share(n) < BOOTSTRAP_TAIL)


def min_mantel_models() -> int:
    """The fewest models whose permutation p can fall below 0.05 (4: 1/4! = 0.042)."""
    return next(n for n in range(2, 100) if 1 / math.factorial(n) < MANTEL_ALPHA)


@dataclass(frozen=True)
class Note:
    topic: str  # models, profiles, embedding, categories, correlations, distances, similarity,
    # matches, labels
    code: str  # a stable identifier of the decision (for tests and queries)
    message: str  # one plain sentence


def notes(inputs: marts.MartInputs) -> list[Note]:
    """Every note of a build, in a fixed order (models, profiles, embedding, categories, ...)."""
    profiles = marts.embedding_profiles(inputs)
    fit = embedding.fit_pca(profiles.matrix, int(inputs.n_components))
    categories = embedding.categorise(profiles.matrix, inputs.n_categories)
    return [
        *model_notes(inputs.models),
        *profile_notes(profiles),
        *embedding_notes(profiles, fit),
        *category_notes(profiles, categories),
        *correlation_notes(profiles.models, fit, inputs.benchmarks),
        *distance_notes(inputs.models),
        *small_study_notes(profiles.models, inputs.benchmarks, inputs.agreement),
        *match_notes(inputs.models, inputs.match_agreement),
        *fold_notes(inputs.runs),
        *fold_embedding_notes(inputs.models, inputs.runs),
    ]


def model_notes(models: pd.DataFrame) -> list[Note]:
    """Dissected models without a single interpretable unit have no concept profile at all."""
    empty = models[models["has_profile"].astype(bool) & (models["n_interpretable_units"] == 0)]
    names = sorted(empty["model"].tolist())
    if not names:
        return []
    verb = "has" if len(names) == 1 else "have"
    return [
        Note(
            "models",
            "no_interpretable_units",
            f"{join(names)} {verb} no interpretable unit (no unit's best IoU exceeds var "
            "min_iou), so no concept profile: left out of the embedding, the categories and "
            "the distances.",
        )
    ]


def profile_notes(profiles: embedding.Profiles) -> list[Note]:
    """Groups of embedded models whose profiles are identical (e.g. one network, two names)."""
    groups: dict[tuple[float, ...], list[str]] = defaultdict(list)
    for model, row in zip(profiles.models, np.round(profiles.matrix, 12), strict=True):
        groups[tuple(row.tolist())].append(model)
    same = [sorted(g) for g in groups.values() if len(g) > 1]
    if not same:
        return []
    listed = "; ".join(" = ".join(g) for g in sorted(same))
    return [
        Note(
            "profiles",
            "identical_profiles",
            f"Identical concept profiles ({listed}): such models are one point of the "
            "embedding, always share a category and are at cosine distance 0.",
        )
    ]


def embedding_notes(profiles: embedding.Profiles, fit: embedding.PcaFit) -> list[Note]:
    """Components that cannot exist: no models, one model, no variance, or too few dimensions."""
    n = len(profiles.models)
    published = fit.scores.shape[1]
    if n == 0:
        return [
            Note(
                "embedding",
                "no_models",
                "No model is in the embedding (dim_models.excluded_reason says why for each), "
                "so no component, category or task correlation is computed.",
            )
        ]
    if n == 1:
        return [
            Note(
                "embedding",
                "single_model",
                f"Only one model ({profiles.models[0]}) is in the embedding, and one profile "
                "has no variance, so no component is published.",
            )
        ]
    if fit.rank == 0:
        return [
            Note(
                "embedding",
                "no_variance",
                f"The {n} models in the embedding have identical concept profiles, so the "
                "profiles do not vary and no component is published.",
            )
        ]
    if published < fit.requested:
        which = "component 1 is" if published == 1 else f"components 1 to {published} are"
        return [
            Note(
                "embedding",
                "components_capped",
                f"n_components is {fit.requested}, but the concept profiles of {n} models span "
                f"only {plural(fit.rank, 'dimension')} ({n} models span at most {n - 1}), so "
                f"only {which} published.",
            )
        ]
    return []


def category_notes(profiles: embedding.Profiles, categories: embedding.Categories) -> list[Note]:
    """k capped at the distinct profiles, one category per model, or no k for 'auto'."""
    n = len(profiles.models)
    if n == 0:
        return []
    out = []
    requested = categories.requested
    if requested == "auto":
        if categories.k == 1:
            out.append(
                Note(
                    "categories",
                    "auto_single_category",
                    "n_categories is auto, but choosing k by silhouette needs at least three "
                    f"models with two distinct profiles (here {plural(n, 'model')}, "
                    f"{categories.n_distinct} distinct), so all models form one category (C1).",
                )
            )
        return out
    if int(requested) > categories.k:
        everyone = "both models" if n == 2 else f"all {n} models"
        what = (
            f"so {everyone} form one category (C1)"
            if categories.k == 1
            else f"so k = {categories.k}"
        )
        if n == 1:
            what = "so it forms one category (C1)"
        out.append(
            Note(
                "categories",
                "categories_capped",
                f"n_categories is {requested}, but there {'is' if n == 1 else 'are'} "
                f"{plural(n, 'model')} with {plural(categories.n_distinct, 'distinct profile')}, "
                f"{what}.",
            )
        )
    if n > 1 and categories.k == n:
        out.append(
            Note(
                "categories",
                "one_model_per_category",
                f"With k = {n} for {n} models every model is a category of its own, so the "
                "categories say nothing beyond the models' names.",
            )
        )
    return out


def correlation_notes(
    embedded: Sequence[str], fit: embedding.PcaFit, benchmarks: pd.DataFrame | None
) -> list[Note]:
    """Task results whose correlation with the components cannot be computed."""
    if benchmarks is None or benchmarks.empty or not embedded:
        return []
    if fit.scores.shape[1] == 0:
        return [
            Note(
                "correlations",
                "no_correlations",
                "No component is published, so no task result is correlated with the embedding.",
            )
        ]
    rows = benchmarks[benchmarks["model"].isin(set(embedded))]
    keys = ["task", "dataset", "metric"]
    values = {tuple(key): group["value"].to_numpy(dtype=float) for key, group in rows.groupby(keys)}
    results = [tuple(key) for key in benchmarks[keys].drop_duplicates().itertuples(index=False)]
    sizes = [len(values.get(key, ())) for key in results]
    all_results = len(results)
    too_few = sum(size < MIN_CORRELATION_MODELS for size in sizes)
    constant = sum(
        len(v) >= MIN_CORRELATION_MODELS and float(np.ptp(v)) == 0 for v in values.values()
    )
    out = []
    if too_few:
        if too_few == all_results:
            what = f"no task result has more than {max(sizes)}, so every r and p is"
        else:
            verb, its = ("has", "its") if too_few == 1 else ("have", "their")
            what = f"{too_few} of the {all_results} task results {verb} fewer, so {its} r and p are"
        out.append(
            Note(
                "correlations",
                "too_few_models",
                f"Pearson r needs at least {MIN_CORRELATION_MODELS} embedded models with a "
                f"result, but {what} left empty.",
            )
        )
    if constant:
        out.append(
            Note(
                "correlations",
                "constant_result",
                f"{plural(constant, 'task result')} {'has' if constant == 1 else 'have'} the "
                f"same value for every embedded model, so {'its' if constant == 1 else 'their'} "
                "r and p are left empty.",
            )
        )
    return out


def small_study_notes(
    embedded: Sequence[str], benchmarks: pd.DataFrame | None, agreement: pd.DataFrame | None
) -> list[Note]:
    """Statistics that exist but mean little for a handful of models: the bootstrap interval of
    r (few distinct resamples, many of them r = +-1) and the Mantel permutation p (n! relabellings
    bound p from below)."""
    out = []
    least = min_bootstrap_models()
    if benchmarks is not None and not benchmarks.empty and embedded:
        rows = benchmarks[benchmarks["model"].isin(set(embedded))]
        sizes = rows.groupby(["task", "dataset", "metric"])["model"].nunique()
        small = sorted({int(s) for s in sizes if MIN_CORRELATION_MODELS <= s < least})
        if small:
            n = small[0]
            out.append(
                Note(
                    "correlations",
                    "few_models_bootstrap",
                    f"Bootstrap intervals of r over {plural(n, 'model')}: such a study has only "
                    f"{inference.distinct_resamples(n)} distinct resamples (each one enumerated, "
                    f"when that is at most var n_boot), and {degenerate_share(n):.0%} of the {n}^{n} "
                    f"equally likely draws hold at most two distinct models, whose r is +-1 or none; that "
                    f"is more than the {BOOTSTRAP_TAIL:.1%} tail of a 95% interval, so below "
                    f"{least} models the interval's ends are set by those draws and say little.",
                )
            )
    if agreement is not None and not agreement.empty:
        counts = agreement.loc[agreement["mantel_r"].notna(), "n_models"]
        if len(counts) and int(counts.min()) < min_mantel_models():
            n = int(counts.min())
            out.append(
                Note(
                    "similarity",
                    "few_models_mantel",
                    f"The Mantel test over {n} models has only {math.factorial(n)} distinct "
                    f"relabellings (all enumerated, so p is exact), and no p can be below "
                    f"1/{math.factorial(n)} = {1 / math.factorial(n):.3f}: it needs at least "
                    f"{min_mantel_models()} models to reach {MANTEL_ALPHA}.",
                )
            )
    return out


def distance_notes(models: pd.DataFrame) -> list[Note]:
    """Cosine distances need two models with a profile."""
    profiled = sorted(models.loc[models["n_interpretable_units"] > 0, "model"].tolist())
    if len(profiled) >= 2 or not models["has_profile"].astype(bool).any():
        return []
    which = f"only one ({profiled[0]})" if profiled else "none"
    return [
        Note(
            "distances",
            "no_distances",
            f"Cosine distances need two models with interpretable units and there is {which}, "
            "so fct_model_distances is empty.",
        )
    ]


def match_notes(models: pd.DataFrame, agreement: pd.DataFrame | None) -> list[Note]:
    """Units are matched across models by their activations on the probe images: why the match
    marts are empty (no two models with image features) or leave pairs out (too few images)."""
    if agreement is None or models["has_profile"].astype(bool).sum() < 2:
        return []
    if agreement.empty:
        return [
            Note(
                "matches",
                "no_unit_matches",
                "fct_unit_matches and fct_unit_match_agreement are empty: units are matched "
                "across models by their mean activation on each probe image (lake "
                "image_features, written by lce extract), and fewer than two models have them "
                "on their primary layer (precomputed labels such as the paper's published data "
                "carry none).",
            )
        ]
    skipped = agreement[
        agreement["n_mutual"].isna() & (agreement["model_a"] < agreement["model_b"])
    ]
    if skipped.empty:
        return []
    pairs = [f"{a} / {b}" for a, b in zip(skipped["model_a"], skipped["model_b"], strict=True)]
    return [
        Note(
            "matches",
            "few_images_matches",
            f"{plural(len(pairs), 'model pair')} share fewer probe images than var "
            f"similarity_min_images, so their units are not matched (null counts in "
            f"fct_unit_match_agreement): {join(pairs)}.",
        )
    ]


def fold_notes(runs: pd.DataFrame | None) -> list[Note]:
    """Units without fold tallies have no leave-one-fold-out label (fct_unit_label_stability):
    a lake of published labels only (the paper's data), or runs with --folds 1 or of an lce
    from before the fold tallies."""
    if runs is None:
        return []
    if runs.empty:
        return [
            Note(
                "labels",
                "no_fold_tallies",
                "No dissection in this lake kept fold tallies (published labels, such as the "
                "paper's data, come without any tallies), so fct_unit_label_stability is empty: "
                "`lce extract --folds K` keeps them.",
            )
        ]
    kept = folds.folded_runs(runs)
    have = set(zip(kept["model"], kept["layer"], strict=True))
    without = sorted(
        f"{m} {layer}" for m, layer in zip(runs["model"], runs["layer"], strict=True)
        if (m, layer) not in have
    )  # fmt: skip
    if not without:
        return []
    if not have:
        what, where = "No dissected layer kept fold tallies", "is empty"
    else:
        verb, it = ("keeps", "it") if len(without) == 1 else ("keep", "them")
        what, where = f"{join(without)} {verb} no fold tallies", f"has no row for {it}"
    return [
        Note(
            "labels",
            "no_fold_tallies",
            f"{what} (extracted with --folds 1, or by an lce from before fold tallies), so "
            f"fct_unit_label_stability {where}: `lce extract --folds K` keeps them.",
        )
    ]


def fold_embedding_notes(models: pd.DataFrame, runs: pd.DataFrame | None) -> list[Note]:
    """The leave-one-fold-out profiles and embedding need every embedded model's primary layer
    with fold tallies of one K and fold seed (``fold_embedding.plan``); no note without an
    embedding (other notes say why) or without the runs to judge by."""
    if runs is None or not models["in_embedding"].astype(bool).any():
        return []
    reason = fold_embedding.plan(models, runs).reason
    if reason is None:
        return []
    return [
        Note(
            "embedding",
            "no_fold_embedding",
            f"{reason}, so {join(list(fold_embedding.MARTS))} are empty: "
            "the leave-one-fold-out profiles and embedding need every embedded model's primary "
            "layer extracted with `lce extract --folds K` (one K and fold seed).",
        )
    ]


def fct_build_notes(inputs: marts.MartInputs) -> pa.Table:
    """What the build could not compute, or capped, and why: one plain sentence per row."""
    rows = [(i, note.topic, note.code, note.message) for i, note in enumerate(notes(inputs), 1)]
    fields: list[tuple[str, pa.DataType]] = [("note_id", pa.int32()), ("topic", pa.string()),
                                             ("code", pa.string()), ("message", pa.string())]  # fmt: skip
    return arrow.table(rows, fields)

"""Downstream tasks for the demo zoo, in the long benchmark format of the paper's data.

Frozen pooled features of each model are probed on fresh synthetic scenes (a third seed):
linear probes (ridge classifiers) for shape, colour, material, object count and scene, and a
few-shot family (5-way nearest-prototype episodes over the shapes, 5 and 20 shots).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import RidgeClassifier
from sklearn.preprocessing import StandardScaler

from lce.synth import COLORS, MATERIALS, SCENES, SHAPES, SceneSpec, sample_scene
from lce.zoo import normalise, render_batch

LINEAR_TASKS = {
    "shape": lambda s: SHAPES.index(s.main.shape),
    "colour": lambda s: list(COLORS).index(s.main.color),
    "material": lambda s: MATERIALS.index(s.main.material),
    "count": lambda s: len(s.objects) - 1,
    "scene": lambda s: SCENES.index(s.scene),
}


def task_data(n_train: int, n_test: int, seed: int) -> tuple[torch.Tensor, list[SceneSpec]]:
    rng = np.random.default_rng(seed)
    specs = [sample_scene(rng, unannotated=False) for _ in range(n_train + n_test)]
    return render_batch(specs), specs


def features(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, images.shape[0], batch):
            out.append(model(normalise(images[s : s + batch])).numpy())
    return np.concatenate(out)


def linear_probe(feats: np.ndarray, labels: np.ndarray, n_train: int) -> float:
    """Test accuracy of a ridge-regression linear classifier on standardised frozen features.

    Ridge (one linear solve) rather than logistic regression: same kind of probe, a hundred times
    faster on two cores, and deterministic.
    """
    scaler = StandardScaler().fit(feats[:n_train])
    clf = RidgeClassifier(alpha=1.0)
    clf.fit(scaler.transform(feats[:n_train]), labels[:n_train])
    return float(clf.score(scaler.transform(feats[n_train:]), labels[n_train:]))


def few_shot(
    feats: np.ndarray,
    classes: np.ndarray,
    shots: int,
    episodes: int,
    seed: int,
    ways: int = 5,
    queries: int = 5,
) -> float:
    """Mean accuracy of nearest-prototype (cosine) classification over random episodes."""
    rng = np.random.default_rng(seed)
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    by_class = {c: np.nonzero(classes == c)[0] for c in np.unique(classes)}
    eligible = [c for c, idx in by_class.items() if idx.size >= shots + queries]
    if len(eligible) < ways:
        return float("nan")
    correct = total = 0
    for _ in range(episodes):
        chosen = rng.choice(eligible, size=ways, replace=False)
        protos, query_x, query_y = [], [], []
        for j, c in enumerate(chosen):
            idx = rng.permutation(by_class[c])[: shots + queries]
            protos.append(unit[idx[:shots]].mean(axis=0))
            query_x.append(unit[idx[shots:]])
            query_y += [j] * queries
        pred = (np.concatenate(query_x) @ np.stack(protos).T).argmax(axis=1)
        correct += int((pred == np.array(query_y)).sum())
        total += len(query_y)
    return correct / total


def benchmark(
    model: torch.nn.Module,
    name: str,
    data: tuple[torch.Tensor, list[SceneSpec]],
    n_train: int,
    episodes: int = 100,
) -> list[dict[str, object]]:
    """Long-format rows (model, task, dataset, metric, value, higher_is_better)."""
    images, specs = data
    feats = features(model, images)
    rows: list[dict[str, object]] = []
    for task, label_of in LINEAR_TASKS.items():
        labels = np.array([label_of(s) for s in specs])
        acc = linear_probe(feats, labels, n_train)
        rows.append(
            {
                "model": name,
                "task": "linear_probe",
                "dataset": task,
                "metric": "accuracy",
                "value": acc,
                "higher_is_better": True,
            }
        )
    # 5-way episodes over the 6 shapes of the test images only (never seen by the probes)
    test_shapes = np.array([SHAPES.index(s.main.shape) for s in specs[n_train:]])
    for shots in (5, 20):
        acc = few_shot(feats[n_train:], test_shapes, shots, episodes, seed=shots)
        if np.isfinite(acc):
            rows.append(
                {
                    "model": name,
                    "task": "few_shot",
                    "dataset": "shape",
                    "metric": f"5-way {shots}-shot accuracy",
                    "value": acc,
                    "higher_is_better": True,
                }
            )
    return rows

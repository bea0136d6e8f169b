"""PNG figures of an evaluation: Precision@Top-K curves, a t-SNE of codes, query grids (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def _rgb(image) -> np.ndarray:
    """PIL images as RGB pixels, so that a grayscale mask shows black and white, not matplotlib's colour map."""
    return np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)


def plot_precision_curves(curves: dict[str, dict], path: str | Path, title: str = "image → shape") -> Path:
    """One Precision@Top-K line per entry of ``{name: {"k": [...], "precision": [...]}}`` (e.g. per code length)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        axes.plot(curve["k"], curve["precision"], label=name)
    axes.set(xlabel="top K", ylabel="precision", title=f"Precision@Top-K, {title}", ylim=(0, 1))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_query_set_curves(sets: dict[str, tuple[dict, dict | None]], path: str | Path, title: str) -> Path:
    """Precision@Top-K of one model on several query sets, each (solid) beside its random codes (dashed, same colour).

    ``sets`` maps a query set's name to its (model curve, random curve or None), curves as in
    `plot_precision_curves`. Query sets differ in how many shapes share a class, so each is read
    against its own random line rather than against the others.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    for index, (name, (curve, random_curve)) in enumerate(sets.items()):
        colour = f"C{index}"
        axes.plot(curve["k"], curve["precision"], color=colour, label=name)
        if random_curve is not None:
            axes.plot(random_curve["k"], random_curve["precision"], color=colour, linestyle="--", alpha=0.7)
    axes.plot([], [], color="grey", linestyle="--", label="random codes (same colour: same query set)")
    axes.set(xlabel="top K", ylabel="precision", title=f"Precision@Top-K, {title}", xscale="log")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_tsne(codes: np.ndarray, labels: np.ndarray, class_names: list[str], path: str | Path, seed: int = 0) -> Path:
    """2-D t-SNE of ±1 codes (Hamming geometry: Euclidean on ±1 is 2·sqrt(Hamming)), coloured by class."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    # Many items share a code exactly; exact t-SNE turns zero distances into NaN, so a tiny seeded
    # jitter (far below one bit flip) separates them without moving any cluster.
    codes = np.asarray(codes, dtype=np.float64) + np.random.default_rng(seed).normal(0, 1e-3, np.shape(codes))
    perplexity = float(min(30, max(2, len(codes) // 4)))
    # method="exact": the Barnes-Hut path crashed (OpenMP clash with torch's runtime) in this process;
    # exact t-SNE is quadratic, fine for the few thousand shapes of an evaluation split.
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", method="exact", random_state=seed)
    xy = tsne.fit_transform(codes)
    figure, axes = plt.subplots(figsize=(7, 6))
    labels = np.asarray(labels)
    colours = plt.get_cmap("tab20")
    for index, label in enumerate(np.unique(labels)):
        chosen = labels == label
        axes.scatter(*xy[chosen].T, s=8, color=colours(index % 20), label=class_names[label])
    if len(np.unique(labels)) <= 20:
        axes.legend(fontsize=6, markerscale=2, loc="best")
    axes.set(title=f"t-SNE of {codes.shape[1]}-bit codes ({len(codes)} items)", xticks=[], yticks=[])
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_query_grid(
    query_images: list,
    retrieved_points: list[list[np.ndarray]],
    relevant: np.ndarray,
    path: str | Path,
) -> Path:
    """One row per query: the image, then its top retrieved shapes as point clouds (x–y view).

    ``relevant[i, j]`` frames shape j of query i green (same class) or red.
    """
    plt = _pyplot()
    rows, columns = len(query_images), 1 + max(len(r) for r in retrieved_points)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows), squeeze=False)
    for row, (image, shapes) in enumerate(zip(query_images, retrieved_points)):
        axes[row, 0].imshow(_rgb(image))
        for column, points in enumerate(shapes, start=1):
            axis = axes[row, column]
            axis.scatter(points[:, 0], points[:, 1], s=0.3, color="black")
            axis.set_aspect("equal")
            for spine in axis.spines.values():
                spine.set(color="tab:green" if relevant[row, column - 1] else "tab:red", linewidth=2)
        for axis in axes[row]:
            axis.set(xticks=[], yticks=[])
    axes[0, 0].set_title("query", fontsize=8)
    for column in range(1, columns):
        axes[0, column].set_title(f"top {column}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def plot_thumbnail_grid(
    queries: list[tuple[object, str]],
    hits: list[list[tuple[object, str]]],
    relevant: list[list[bool]],
    path: str | Path,
) -> Path:
    """One row per query: the query image, then its retrieved shapes' thumbnails, each with its title.

    ``queries[i]`` and ``hits[i][j]`` are ``(image, title)``; ``relevant[i][j]`` frames and titles hit j
    of query i green (same class as the query) or red.
    """
    plt = _pyplot()
    rows, columns = len(queries), 1 + max(len(row) for row in hits)
    figure, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows), squeeze=False)
    for row, ((image, title), row_hits) in enumerate(zip(queries, hits)):
        axes[row, 0].imshow(_rgb(image))
        axes[row, 0].set_title(title, fontsize=7)
        for column, (thumbnail, hit_title) in enumerate(row_hits, start=1):
            colour = "tab:green" if relevant[row][column - 1] else "tab:red"
            axes[row, column].imshow(_rgb(thumbnail))
            axes[row, column].set_title(hit_title, fontsize=7, color=colour)
            for spine in axes[row, column].spines.values():
                spine.set(color=colour, linewidth=2)
        for axis in axes[row]:
            axis.set(xticks=[], yticks=[])
        for axis in axes[row, 1 + len(row_hits) :]:
            axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


__all__ = ["plot_precision_curves", "plot_query_grid", "plot_query_set_curves", "plot_thumbnail_grid", "plot_tsne"]

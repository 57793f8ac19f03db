import numpy as np
import pytest

from core.augment import Augmentation
from core.data import load_dataset
from core.explore import (augmented_copies, class_counts, class_mean_images, embedding_subset, filtered_indices,
                          ordered, page_count, page_of, pca, pixel_features, pixel_statistics, tsne)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_filtered_indices_by_class_and_within_a_subset():
    labels = np.array([0, 1, 2, 1, 0, 2])
    assert filtered_indices(labels).tolist() == [0, 1, 2, 3, 4, 5]
    assert filtered_indices(labels, []).tolist() == [0, 1, 2, 3, 4, 5]  # no class chosen means all
    assert filtered_indices(labels, [1, 2]).tolist() == [1, 2, 3, 5]
    assert filtered_indices(labels, [0], within=np.array([4, 1, 0])).tolist() == [0, 4]


def test_shuffled_order_is_reproducible_and_a_permutation():
    indices = np.arange(100)
    first, again, other = ordered(indices, "shuffled", 3), ordered(indices, "shuffled", 3), ordered(indices, "shuffled", 4)
    assert (first == again).all() and not (first == other).all() and sorted(first) == list(range(100))
    assert ordered(np.array([5, 1, 3]), "index").tolist() == [1, 3, 5]
    with pytest.raises(ValueError, match="order"):
        ordered(indices, "random")  # type: ignore[arg-type]


def test_pages_cover_every_sample_once_and_clamp():
    indices = np.arange(250)
    assert page_count(250, 100) == 3 and page_count(0, 100) == 1
    pages = [page_of(indices, page, 100) for page in (1, 2, 3)]
    assert [len(p) for p in pages] == [100, 100, 50] and np.concatenate(pages).tolist() == list(range(250))
    assert page_of(indices, 9, 100).tolist() == pages[2].tolist() and page_of(indices, 0, 100)[0] == 0
    assert len(page_of(np.arange(0), 1, 100)) == 0


def test_class_counts_and_means_against_a_direct_computation(digits):
    images, labels = digits.train_images.numpy(), digits.train_labels.numpy()
    counts = class_counts(labels, 10)
    assert counts.sum() == len(labels) and counts[3] == (labels == 3).sum()
    means = class_mean_images(images, labels, 10)
    assert means.shape == (10, 8, 8)
    np.testing.assert_allclose(means[7], images[labels == 7].mean(0), rtol=1e-5)
    assert (class_mean_images(images[labels != 4], labels[labels != 4], 10)[4] == 0).all()  # empty class: zeros


def test_pixel_statistics_against_numpy(digits):
    images = digits.test_images.numpy()
    stats = pixel_statistics(images, 16)
    assert stats.histogram.sum() == images.size and len(stats.histogram) == 17
    assert stats.mean == pytest.approx(images.mean()) and stats.std == pytest.approx(images.std())
    assert stats.background_share == pytest.approx((images == 0).mean())
    assert stats.saturated_share == pytest.approx((images == 16).mean())
    np.testing.assert_allclose(stats.std_image, images.std(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats.ink_per_image, images.reshape(len(images), -1).mean(1) / 16, rtol=1e-5)


def test_embedding_subset_is_reproducible_and_bounded():
    subset = embedding_subset(10_000, 2000, seed=1)
    assert len(subset) == 2000 and len(set(subset)) == 2000 and (np.diff(subset) > 0).all()
    assert (subset == embedding_subset(10_000, 2000, seed=1)).all()
    assert embedding_subset(50, 2000).tolist() == list(range(50))


def test_pca_matches_scikit_learn_up_to_sign(digits):
    from sklearn.decomposition import PCA

    features = pixel_features(digits.train_images.numpy(), 16)
    result = pca(features, 2)
    reference = PCA(2, svd_solver="full").fit(features)
    assert result.coordinates.shape == (len(features), 2)
    np.testing.assert_allclose(result.explained, reference.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_allclose(np.abs(result.coordinates), np.abs(reference.transform(features)), atol=1e-3)
    np.testing.assert_allclose(pca(features[::-1], 2).coordinates[::-1], result.coordinates, atol=1e-3)  # no sign flips


def test_tsne_keeps_neighbourhoods_as_well_as_scikit_learn_and_reports_progress(digits):
    from sklearn.manifold import TSNE, trustworthiness

    features = pixel_features(digits.test_images.numpy(), 16)  # 450 samples: quick
    reports: list[tuple[float, str]] = []
    layout = tsne(features, iterations=300, progress=lambda fraction, message: reports.append((fraction, message)))
    assert layout.shape == (len(features), 2) and np.isfinite(layout).all()
    fractions = [fraction for fraction, _ in reports]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions) and len(fractions) >= 30
    reference = TSNE(2, init="pca", random_state=0, max_iter=300).fit_transform(pca(features, 50).coordinates)
    ours, theirs = trustworthiness(features, layout, n_neighbors=10), trustworthiness(features, reference, n_neighbors=10)
    assert ours > theirs - 0.01, (ours, theirs)
    assert ours > trustworthiness(features, pca(features, 2).coordinates, n_neighbors=10) + 0.05  # far better than PCA


def test_tsne_refuses_too_few_samples():
    with pytest.raises(ValueError, match="at least 4"):
        tsne(np.zeros((3, 64), dtype=np.float32))


def test_tsne_on_duplicate_images_stays_finite():
    features = np.repeat(np.eye(5, 64, dtype=np.float32), 10, axis=0)  # five distinct images, ten copies each
    assert np.isfinite(tsne(features, iterations=50)).all()


def test_augmented_copies_vary_keep_range_and_no_augmentation_keeps_the_image(digits):
    image = digits.train_images[0].numpy()
    copies = augmented_copies(image, Augmentation(shift=0.1, rotation=15, scale=0.1), 8, 16, seed=0)
    assert copies.shape == (8, 8, 8) and copies.dtype == np.uint8 and copies.max() <= 16
    assert len({c.tobytes() for c in copies}) == 8  # each draw differs
    assert (augmented_copies(image, Augmentation(), 3, 16) == image).all()
    again = augmented_copies(image, Augmentation(shift=0.1, rotation=15, scale=0.1), 8, 16, seed=0)
    assert (again == copies).all()

"""Patch sampling: foreground rule, class-balanced oversampling, padding, storage, determinism."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from Training.config import AugmentationConfig, SamplingConfig
from Training.sampling import (
    CaseCache,
    DiskCases,
    MemoryCases,
    PatchDataset,
    PatchSampler,
    StepBatchSampler,
    case_order,
    class_locations,
    load_training_case,
    make_training_case,
    save_training_case,
    seed_worker,
)


def _sphere_case(case_id="ball", shape=(64, 64, 64), centre=(40, 20, 30), radius=12):
    grid = np.indices(shape)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    label = (distance <= radius).astype(np.uint8)
    image = (label + 0.1 * np.random.default_rng(0).normal(size=shape))[None]
    return make_training_case(case_id, image, label, (1.0, 1.0, 1.0))


def _background(labels):
    return float((labels == 0).float().mean())


def test_foreground_rule_redraws_patches_with_too_much_background():
    case = _sphere_case()
    free = PatchSampler((16, 16, 16), 3, SamplingConfig(foreground_oversample=0.0))
    ruled = PatchSampler(
        (16, 16, 16),
        3,
        SamplingConfig(foreground_oversample=0.0, max_background=0.95, tries=30),
    )
    free_bg = [_background(free.sample(case, np.random.default_rng(n))[1]) for n in range(40)]
    ruled_bg = [_background(ruled.sample(case, np.random.default_rng(n))[1]) for n in range(40)]
    assert sum(bg > 0.95 for bg in free_bg) > 20  # most random patches miss the sphere
    assert all(bg <= 0.95 for bg in ruled_bg)


def test_foreground_rule_keeps_the_best_patch_when_no_try_succeeds():
    case = _sphere_case(radius=1)  # 7 voxels: no 16^3 patch can hold 5 % foreground
    sampler = PatchSampler(
        (16, 16, 16), 3, SamplingConfig(foreground_oversample=1.0, max_background=0.95, tries=3)
    )
    image, label = sampler.sample(case, np.random.default_rng(0))
    assert image.shape == (1, 16, 16, 16) and int(label.sum()) == 7


def test_class_balanced_oversampling_centres_on_each_present_class():
    shape = (32, 48, 48)
    label = np.zeros(shape, dtype=np.uint8)
    label[:, :24] = 1  # large class
    label[20:22, 40:42, 40:42] = 2  # tiny class
    case = make_training_case("two", label[None].astype(np.float32), label, (1.0, 1.0, 1.0))
    sampler = PatchSampler((8, 8, 8), 3, SamplingConfig(foreground_oversample=1.0))
    centres = []
    for n in range(60):
        _, patch = sampler.sample(case, np.random.default_rng(n))
        centres.append(int(patch[4, 4, 4]))  # the centre voxel P // 2
    assert 0 not in centres
    assert 15 <= centres.count(2) <= 45  # each class drawn with probability 1/2


def test_small_case_is_padded_and_fully_inside_the_patch():
    rng = np.random.default_rng(0)
    image = rng.uniform(1.0, 2.0, size=(2, 6, 10, 12)).astype(np.float32)
    label = np.ones((6, 10, 12), dtype=np.uint8)
    case = make_training_case("small", image, label, (1.0, 1.0, 1.0))
    sampler = PatchSampler((16, 16, 16), 3, SamplingConfig(foreground_oversample=0.0))
    for n in range(5):
        patch, patch_label = sampler.sample(case, np.random.default_rng(n))
        assert patch.shape == (2, 16, 16, 16)
        assert float(patch.sum()) == pytest.approx(float(image.sum()), rel=1e-6)
        assert int(patch_label.sum()) == label.size


def test_2d_patches_come_from_one_slice():
    image = np.arange(3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)  # (K, J, I)
    label = np.zeros((3, 40, 50), dtype=np.uint8)
    case = make_training_case("slices", image[None], label, (1.0, 1.0, 2.0))
    sampler = PatchSampler((16, 8, 1), 2, SamplingConfig(foreground_oversample=0.0))
    patch, patch_label = sampler.sample(case, np.random.default_rng(1))
    assert patch.shape == (1, 8, 16) and patch_label.shape == (8, 16)
    k = int(patch[0, 0, 0]) // (40 * 50)
    j0, i0 = divmod(int(patch[0, 0, 0]) % (40 * 50), 50)
    np.testing.assert_array_equal(patch[0].numpy(), image[k, j0 : j0 + 8, i0 : i0 + 16])


def test_disk_cases_round_trip_memory_mapped(tmp_path):
    case = _sphere_case("disk", shape=(20, 22, 24), centre=(10, 11, 12), radius=5)
    folder = save_training_case(tmp_path, case)
    loaded = load_training_case(folder)
    assert isinstance(loaded.image, np.memmap)
    np.testing.assert_array_equal(loaded.image, case.image)
    np.testing.assert_array_equal(loaded.label, case.label)
    assert loaded.spacing == case.spacing
    np.testing.assert_array_equal(loaded.locations[1], case.locations[1])
    assert not list(tmp_path.glob(".*partial"))


def test_class_locations_subsample_without_leaving_the_class():
    label = np.zeros((30, 30, 30), dtype=np.uint8)
    label[:20] = 1
    label[25:, :4, :4] = 3
    locations = class_locations(label, max_per_class=100)
    assert sorted(locations) == [1, 3]
    assert len(locations[1]) == 100 and len(np.unique(locations[1], axis=0)) == 100
    assert np.all(label[tuple(locations[1].T)] == 1)
    assert len(locations[3]) == 5 * 4 * 4  # fewer than the cap: all kept


def test_case_cache_is_least_recently_used():
    loads = []

    class Counting(MemoryCases):
        def load(self, index):
            loads.append(index)
            return super().load(index)

    cache = CaseCache(
        Counting([_sphere_case(str(i), (8, 8, 8), (4, 4, 4), 2) for i in range(3)]), 2
    )
    for index in (0, 1, 0, 2, 0, 1):
        cache.get(index)
    assert loads == [0, 1, 2, 1]  # 1 was evicted by 2 (0 had been used more recently)


def test_case_order_visits_every_case_once_per_block():
    order = [case_order(3, 5, n) for n in range(20)]
    for block in range(4):
        assert sorted(order[5 * block : 5 * block + 5]) == list(range(5))
    assert order[:5] != order[5:10] or order[5:10] != order[10:15]


def test_step_batch_sampler_splits_samples_over_ranks():
    single = list(StepBatchSampler(4, 2, 5, rank=0, world_size=1))
    assert single == [[8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19]]
    ranks = [list(StepBatchSampler(2, 0, 3, rank=r, world_size=2)) for r in range(2)]
    flat = [i for r in ranks for batch in r for i in batch]
    assert sorted(flat) == list(range(12))
    assert ranks[0][1] == [4, 5] and ranks[1][1] == [6, 7]


def test_dataset_is_deterministic_across_worker_counts(tmp_path):
    cases = [_sphere_case(f"c{i}", (24, 24, 24), (8 + i, 12, 14), 5 + i) for i in range(3)]
    source = DiskCases([save_training_case(tmp_path, case) for case in cases])
    sampler = PatchSampler(
        (16, 16, 16), 3, SamplingConfig(foreground_oversample=0.5), AugmentationConfig()
    )

    def batches(workers):
        dataset = PatchDataset(source, sampler, seed=11, cache_size=2)
        loader = DataLoader(
            dataset,
            batch_sampler=StepBatchSampler(2, 3, 7),
            num_workers=workers,
            worker_init_fn=seed_worker if workers else None,
        )
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == 4
    for (a_image, a_label), (b_image, b_label) in zip(serial, parallel, strict=True):
        assert torch.equal(a_image, b_image) and torch.equal(a_label, b_label)
    # Sample n depends only on n: a fresh dataset gives item 9 == batch 1 of step 4, slot 1.
    fresh = PatchDataset(source, sampler, seed=11)
    assert torch.equal(fresh[9][0], serial[1][0][1])
    other_seed = PatchDataset(source, sampler, seed=12)
    assert not torch.equal(other_seed[9][0], serial[1][0][1])

"""The HDF5 demo format on real files: writer, resume, checks on open, loader, shared helpers.

(tests/test_datasets.py makes real datasets with the simulator; these tests use synthetic episodes
so that each failure mode can be produced exactly.)
"""
import h5py
import numpy as np
import pytest
import torch

from pxp.core.camera import Camera
from pxp.experiment.data import (DatasetError, DemoDataset, DemoWriter, normalize_image, open_dataset, partial_path,
                                 select_demos)

CAM = Camera.from_fovy(45.0, 16, 12, position=[0.66, 0.0, 1.61],
                       rotation_world_from_mjcam=[[0, -0.628, 0.778], [1, 0, 0], [0, 0.778, 0.628]])


def episode(i, T=7):
    rng = np.random.default_rng(i)
    eef = np.stack([np.linspace(-0.2, 0.0, T), np.full(T, 0.1 * i), np.linspace(1.17, 0.93, T)], axis=1)
    grip = (np.arange(T) >= T // 2).astype(float)
    return {"obs": {"agentview_rgb": rng.integers(0, 256, (T, 12, 16, 3), dtype=np.uint8),
                    "eef_pos": eef, "eef_pixel": CAM.project(eef), "gripper": grip * 0.9},
            "actions": np.concatenate([eef, grip[:, None]], axis=1), "camera": CAM}


def write(path, episodes, fail=(), finish=True, config_hash="h1"):
    with DemoWriter(path, config_hash=config_hash, attrs={"generator": "test", "generator_config": {"rows": 2}},
                    log=lambda m: None) as w:
        for i in episodes:
            if i in w.done():
                continue
            w.write(i, episode(i), {"cell": i, "offset": (0.1, -0.2), "outcome": "MISS" if i in fail else "PLACE",
                                    "objects": {"bowl": [0.0, 0.2, 0.9]}}, success=i not in fail)
        if finish:
            w.finish()


def test_roundtrip_layout_and_attrs(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(4), fail={2})
    assert path.exists() and not partial_path(path).exists()
    with open_dataset(path, verify=True) as f:
        assert [d.episode for d in f.demos] == [0, 1, 3]  # the failed episode is kept out...
        assert len(f.failed) == 1 and f.failed[0]["outcome"] == "MISS"  # ...but counted
        assert f.attrs["n_demos"] == 3 and f.attrs["n_failed"] == 1 and f.attrs["n_episodes"] == 4
        assert f.config("generator_config") == {"rows": 2} and f.attrs["complete"]
        d = f.demos[2]
        assert d.attrs["cell"] == 3 and np.allclose(d.attrs["offset"], [0.1, -0.2]) and d.attrs["outcome"] == "PLACE"
        assert d.length == 7
        img = f.read(2, "obs/agentview_rgb")
        assert img.dtype == np.uint8 and img.shape == (7, 12, 16, 3)
        assert np.array_equal(img, episode(3)["obs"]["agentview_rgb"])
        cam = f.camera(2)
        assert np.allclose(cam.project(f.read(2, "obs/eef_pos")), f.read(2, "obs/eef_pixel"))
    with h5py.File(path) as h:  # robomimic-like paths, chunked + compressed images
        ds = h["data/demo_3/obs/agentview_rgb"]
        assert ds.chunks == (1, 12, 16, 3) and ds.compression == "gzip"
        assert h["data/demo_3/actions"].shape == (7, 4) and h["data/demo_3/camera/K"].shape == (3, 3)


def test_resume_writes_every_episode_once(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(3), finish=False)  # a run stopped after 3 episodes
    with pytest.raises(DatasetError, match="not finished"):
        open_dataset(path)
    write(path, range(6))  # the rerun
    with open_dataset(path) as f:
        assert [d.episode for d in f.demos] == list(range(6))


def test_half_written_episode_is_dropped_on_resume(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(2), finish=False)
    with h5py.File(partial_path(path), "a") as h:  # a kill in the middle of episode 2's arrays
        h.create_group("data/demo_2/obs").create_dataset("eef_pos", data=np.zeros((3, 3)))
    write(path, range(4))
    with open_dataset(path) as f:
        assert [d.episode for d in f.demos] == [0, 1, 2, 3] and f.demos[2].length == 7


def test_resume_refuses_another_config(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(1), finish=False)
    with pytest.raises(DatasetError, match="another configuration"):
        write(path, range(2), config_hash="h2")


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(3))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        open_dataset(path)
    with pytest.raises(DatasetError):
        DemoDataset(path, horizon=2)


def test_corrupt_image_chunk_is_a_clear_error(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(1))
    with h5py.File(path) as h:
        offset = h["data/demo_0/obs/agentview_rgb"].id.get_chunk_info(3).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 10: offset + 30] = bytes(20)  # flip bytes inside one compressed frame
    path.write_bytes(bytes(raw))
    with open_dataset(path) as f:  # the header is fine...
        f.read(0, "obs/agentview_rgb", 0)
        with pytest.raises(DatasetError, match="corrupt"):  # ...the checksum catches the bad frame
            f.read(0, "obs/agentview_rgb", 3)
    with pytest.raises(DatasetError, match="corrupt"):
        open_dataset(path, verify=True)


def test_unfinished_and_foreign_files(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(2))
    with h5py.File(path, "a") as h:
        h.attrs["complete"] = False
    with pytest.raises(DatasetError, match="did not finish"):
        open_dataset(path)
    with h5py.File(tmp_path / "other.hdf5", "w") as h:
        h.create_group("data")
    with pytest.raises(DatasetError, match="not a pxp demo dataset"):
        open_dataset(tmp_path / "other.hdf5")
    with pytest.raises(DatasetError, match="no dataset"):
        open_dataset(tmp_path / "missing.hdf5")
    write(path := tmp_path / "e.hdf5", range(2))
    with h5py.File(path, "a") as h:
        del h["data/demo_1/obs/gripper"]
    with pytest.raises(DatasetError, match="demo_1 has no obs/gripper"):
        open_dataset(path)


def test_loader_batch_contract(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(3))
    for preload in (True, False):
        ds = DemoDataset(path, horizon=3, stride=2, preload=preload)
        assert len(ds) == 21
        d, t = ds.locate(7 + 4)  # demo 1, frame 4 of 7
        assert (d, t) == (1, 4)
        s = ds[11]
        ref = episode(1)
        assert s["image"].shape == (3, 12, 16) and s["image"].dtype == torch.float32
        assert torch.allclose(s["image"], normalize_image(ref["obs"]["agentview_rgb"][4]))
        fut = [6, 6, 6]  # t+2, t+4, t+6 clamped to the last frame (6)
        assert np.allclose(s["target_pos"].numpy(), ref["obs"]["eef_pos"][fut])
        assert np.allclose(s["target_pixel"].numpy(), ref["obs"]["eef_pixel"][fut], atol=1e-4)
        assert s["target_gripper"].tolist() == [1.0, 1.0, 1.0] and s["gripper"].item() == pytest.approx(0.9)
        assert s["K"].shape == (3, 3) and s["extrinsics"].shape == (4, 4)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)))
    shapes = {k: tuple(v.shape) for k, v in batch.items()}
    assert shapes == {"image": (4, 3, 12, 16), "eef_pos": (4, 3), "eef_pixel": (4, 2), "gripper": (4,),
                      "target_pos": (4, 3, 3), "target_pixel": (4, 3, 2), "target_gripper": (4, 3),
                      "K": (4, 3, 3), "extrinsics": (4, 4, 4)}


def test_frames_from_ram_cache_and_hdf5_are_the_same(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(4), fail={1})
    sets = {mode: DemoDataset(path, horizon=2, demos=[2, 0], frames=mode) for mode in ("ram", "cache", "hdf5")}
    assert [ds.frames for ds in sets.values()] == ["ram", "cache", "hdf5"]
    for i in range(len(sets["ram"])):
        ref = sets["hdf5"][i]["image"]
        assert all(torch.equal(ds[i]["image"], ref) for ds in sets.values())
    # above the RAM limit the default is the decoded cache
    assert DemoDataset(path, horizon=2, preload_limit_gb=1e-9).frames == "cache"
    assert DemoDataset(path, horizon=2).frames == "ram"


def test_frame_cache_is_rebuilt_when_stale_or_incomplete(tmp_path):
    from pxp.experiment.data import FrameCache

    path = tmp_path / "d.hdf5"
    write(path, range(2))
    cache = FrameCache(path).build()
    assert cache.data_path.name == "d.hdf5.frames.u8" and cache.index_path.exists()
    assert cache.data_path.stat().st_size == 2 * 7 * 12 * 16 * 3
    assert not list(tmp_path.glob("*.tmp-*"))  # written through a temp file
    stamp = cache.data_path.stat().st_mtime_ns
    FrameCache(path).build()
    assert cache.data_path.stat().st_mtime_ns == stamp  # up to date: reused
    path.unlink()
    write(path, range(3), config_hash="h2")  # another dataset at the same path
    ds = DemoDataset(path, horizon=1, frames="cache")
    assert np.array_equal(ds[2 * 7 + 3]["image"], normalize_image(episode(2)["obs"]["agentview_rgb"][3]))
    with open(cache.data_path, "r+b") as f:  # a cache cut short (a full disk, a kill) is not trusted
        f.truncate(100)
    ds = DemoDataset(path, horizon=1, frames="cache")
    assert torch.equal(ds[20]["image"], normalize_image(episode(2)["obs"]["agentview_rgb"][6]))


def test_batches_are_the_same_with_worker_processes(tmp_path):
    from pxp.experiment.training import Batches

    path = tmp_path / "d.hdf5"
    write(path, range(3))
    ds = DemoDataset(path, horizon=2, frames="cache")
    plain, workers = Batches(ds, 4, seed=3, device="cpu"), Batches(ds, 4, seed=3, device="cpu", num_workers=2)
    for _ in range(12):  # 21 samples / 4 = 5 batches an epoch: crosses two epoch boundaries
        a, b = next(plain), next(workers)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert workers.epoch == plain.epoch == 2


def test_loader_workers_default():
    from pxp.experiment.data import loader_workers

    assert loader_workers(None, "cpu") == 0 and loader_workers(3, "cpu") == 3
    assert 0 <= loader_workers(None, "cuda") <= 8


def test_demo_subsets(tmp_path):
    assert np.array_equal(select_demos(50, 5, seed=3), select_demos(50, 5, seed=3))
    assert not np.array_equal(select_demos(50, 5, seed=3), select_demos(50, 5, seed=4))
    small, big = set(select_demos(50, 3, 1)), set(select_demos(50, 10, 1))
    assert small < big  # sweeps add demos
    assert len(select_demos(50, None)) == 50
    with pytest.raises(DatasetError):
        select_demos(3, 5)
    path = tmp_path / "d.hdf5"
    write(path, range(5))
    a = DemoDataset(path, horizon=1, count=2, seed=7)
    b = DemoDataset(path, horizon=1, count=2, seed=7)
    assert [d.episode for d in a.demos] == [d.episode for d in b.demos] and len(a) == 14


def test_filter_keys_pick_a_datasets_demos(tmp_path):
    """robomimic's mask/<key>: failed episodes are left out of a key, training draws only from its demos."""
    from types import SimpleNamespace

    from pxp.experiment.training import demo_datasets

    path = tmp_path / "d.hdf5"
    with DemoWriter(path, config_hash="h", log=lambda m: None) as w:
        for i in range(6):
            w.write(i, episode(i), {"cell": i}, success=i != 4)
        w.finish(masks={"left": [0, 2, 4], "right": [1, 3, 5]})
    with h5py.File(path) as h:
        assert [n.decode() for n in h["mask/left"][()]] == ["demo_0", "demo_2"]
    with open_dataset(path) as f:
        assert f.filter_keys() == ["left", "right"]
        assert f.filtered("right").tolist() == [1, 3, 4]  # positions of demo_1, demo_3, demo_5
        with pytest.raises(DatasetError, match="no filter key 'near' .*left, right"):
            f.filtered("near")
    tcfg, policy = SimpleNamespace(holdout_fraction=0.0, target_stride=1), SimpleNamespace(horizon=1)
    train, hold, split = demo_datasets(path, policy, tcfg, None, filter_key="left")
    assert [d.name for d in train.demos] == ["demo_0", "demo_2"] and hold is None and split["available"] == 2
    train, _, split = demo_datasets(path, policy, tcfg, 2, filter_key="right")
    assert {d.name for d in train.demos} < {"demo_1", "demo_3", "demo_5"} and len(train.demos) == 2


def test_normalize_image():
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 255
    x = normalize_image(img)
    assert x.shape == (3, 4, 5)
    assert torch.allclose(x[0], torch.full((4, 5), (1 - 0.485) / 0.229))
    assert torch.allclose(x[1], torch.full((4, 5), -0.456 / 0.224))
    assert normalize_image(np.stack([img, img])).shape == (2, 3, 4, 5)
    with pytest.raises(TypeError):
        normalize_image(x.numpy())  # already float: probably normalised twice


def test_sample_weights_balance_demos_and_phases(tmp_path):
    path = tmp_path / "d.hdf5"
    lengths, phases = (4, 8), ([0, 1, 1, 1], [0, 1, 1, 1, 1, 1, 2, 2])
    with DemoWriter(path, config_hash="h1", log=lambda m: None) as w:
        for i, (T, phase) in enumerate(zip(lengths, phases)):
            w.write(i, {**episode(i, T), "extra": {"phase": np.array(phase, np.int8)}}, {"cell": i}, success=True)
        w.finish()
    ds = DemoDataset(path, horizon=1)
    assert ds.sample_weights("frames") is None
    demos = ds.sample_weights("demos")
    assert np.allclose([demos[:4].sum(), demos[4:].sum()], 1.0)  # every demo counts once, whatever its length
    by_phase = ds.sample_weights("phases")
    assert np.allclose(by_phase[:4], [1 / 2, 1 / 6, 1 / 6, 1 / 6])  # 2 phases: the home frame gets half the demo
    assert np.allclose(by_phase[4:], [1 / 3, *[1 / 15] * 5, 1 / 6, 1 / 6])


def test_phase_sampling_without_phases_names_what_is_missing(tmp_path):
    path = tmp_path / "d.hdf5"
    write(path, range(2))
    with pytest.raises(DatasetError, match="demo_0 has no per-step 'phase'.*frames or demos"):
        DemoDataset(path, horizon=1).sample_weights("phases")


def test_weighted_batches_follow_the_weights_and_the_epoch_seed(tmp_path):
    from pxp.experiment.training import Batches

    path = tmp_path / "d.hdf5"
    write(path, range(3))  # 21 samples
    ds = DemoDataset(path, horizon=1, frames="ram")
    weights = np.zeros(len(ds))
    weights[[0, 7, 14]] = 1.0  # only the home frames
    homes = {tuple(normalize_image(episode(i)["obs"]["agentview_rgb"][0]).flatten()[:8].tolist()) for i in range(3)}
    a, b = Batches(ds, 4, seed=3, device="cpu", weights=weights), Batches(ds, 4, seed=3, device="cpu", weights=weights)
    for _ in range(7):  # crosses an epoch boundary (5 batches of 4 an epoch)
        x, y = next(a), next(b)
        assert torch.equal(x["image"], y["image"])
        assert {tuple(img.flatten()[:8].tolist()) for img in x["image"]} <= homes
    assert a.epoch == 1

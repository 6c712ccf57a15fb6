"""TD-MPC2 chunk datasets: loading (eager and memory-mapped), validation errors, window sampling."""
import pytest
import torch

from mbdpo_fast.data.chunks import DatasetError, OfflineDataset, chunk_paths, load_chunk, write_synthetic_chunks

TASKS = [(5, 2), (7, 3), (4, 1)]  # (obs_dim, action_dim): padded to 7 and 3


@pytest.fixture
def data_dir(tmp_path):
    write_synthetic_chunks(tmp_path, TASKS, episodes_per_task=4, episode_length=21, chunks=3)
    return tmp_path


@pytest.mark.parametrize("mmap", [False, True])
def test_load_pads_and_clears_the_first_slot(data_dir, mmap):
    ds = OfflineDataset.load(data_dir, mmap=mmap)
    assert ds.num_episodes == 12 and ds.episode_length == 21
    assert ds.obs.shape == (12, 21, 7) and ds.action.shape == (12, 21, 3) and ds.task.tolist().count(1) == 4
    assert (ds.action[:, 0] == 0).all() and (ds.reward[:, 0] == 0).all() and torch.isfinite(ds.action).all()
    for i, (d, a) in enumerate(TASKS):  # padding beyond a task's own dims is zero
        m = ds.task == i
        assert (ds.obs[m][..., d:] == 0).all() and (ds.action[m][..., a:] == 0).all()
        assert ds.action[m][:, 1:, :a].abs().sum() > 0


def test_windows_stay_in_one_episode_and_match_the_data(data_dir):
    ds = OfflineDataset.load(data_dir)
    ds.obs[..., -1] = torch.arange(ds.num_episodes).view(-1, 1).float()  # tag every slot with its episode
    ds.obs[..., -2] = torch.arange(ds.episode_length).float()  # and its time index
    H = 5
    b = ds.sample(256, H, generator=torch.Generator().manual_seed(0))
    assert b.obs.shape == (H + 1, 256, 7) and b.action.shape == (H, 256, 3) and b.reward.shape == (H, 256, 1)
    ep, t = b.obs[..., -1].long(), b.obs[..., -2].long()
    assert (ep == ep[0]).all()  # never crosses into another episode
    assert (t[1:] - t[:-1] == 1).all() and (t[0] >= 0).all() and (t[-1] <= ds.episode_length - 1).all()
    assert torch.equal(b.task, ds.task[ep[0]])
    assert torch.equal(b.action[0], ds.action[ep[0], t[1]])  # slot t+1 holds the action taken at t


def test_errors_name_the_file_and_the_problem(tmp_path, data_dir):
    with pytest.raises(DatasetError, match="no chunk_"):
        chunk_paths(tmp_path / "empty")
    bad = data_dir / "chunk_9.pt"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(DatasetError, match="chunk_9.pt: not a readable dataset chunk"):
        OfflineDataset.load(data_dir)
    torch.save({"obs": torch.zeros(2, 5, 3)}, bad)
    with pytest.raises(DatasetError, match="needs keys"):
        load_chunk(bad)
    torch.save({"obs": torch.zeros(2, 5, 3), "action": torch.zeros(2, 4, 1), "reward": torch.zeros(2, 5),
                "task": torch.zeros(2, dtype=torch.long)}, bad)
    with pytest.raises(DatasetError, match="disagree"):
        load_chunk(bad)
    torch.save({"obs": torch.full((2, 5, 3), float("nan")), "action": torch.zeros(2, 5, 1),
                "reward": torch.zeros(2, 5), "task": torch.zeros(2, dtype=torch.long)}, bad)
    with pytest.raises(DatasetError, match="NaN"):
        load_chunk(bad)
    torch.save({"obs": torch.zeros(2, 9, 3), "action": torch.zeros(2, 9, 1), "reward": torch.zeros(2, 9),
                "task": torch.zeros(2, dtype=torch.long)}, bad)
    with pytest.raises(DatasetError, match="disagree on"):
        OfflineDataset.load(data_dir)
    full = data_dir / "chunk_0.pt"
    full.write_bytes(full.read_bytes()[:200])  # truncated
    with pytest.raises(DatasetError, match="chunk_0.pt"):
        load_chunk(full)

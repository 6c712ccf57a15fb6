"""TD-MPC2 chunk datasets: loading (eager and memory-mapped), padding of mixed dims, task-name
remapping, validation errors, window sampling, and the replay -> chunks export."""
from pathlib import Path

import pytest
import torch

from mbdpo_fast.data.checkpoint import FORMAT, atomic_save
from mbdpo_fast.data.chunks import OfflineDataset, chunk_paths, load_chunk
from mbdpo_fast.errors import DatasetError
from mbdpo_fast.data.export import main as export_main
from mbdpo_fast.data.export import replay_to_chunks
from mbdpo_fast.data.replay import ReplayBuffer

TASKS = [(5, 2), (7, 3), (4, 1)]  # (obs_dim, action_dim): padded to 7 and 3
MODES = pytest.mark.parametrize("mmap", [False, True], ids=["eager", "mmap"])
from helpers import write_synthetic_chunks


@pytest.fixture
def data_dir(tmp_path):
    write_synthetic_chunks(tmp_path, TASKS, episodes_per_task=4, episode_length=21, chunks=3)
    return tmp_path


def save_chunk(path, first_ep: int, n: int, T: int, D: int, A: int, task=0, tasks=None):
    """n episodes of T slots tagged with their content: obs[..., 0] = global episode id,
    obs[..., 1] = t; action at slot t = 1000 * id + t (first dim), reward = id + t / 100; NaN at t=0."""
    e = torch.arange(first_ep, first_ep + n, dtype=torch.float32).view(n, 1)
    t = torch.arange(T, dtype=torch.float32).view(1, T)
    obs = torch.zeros(n, T, D)
    obs[..., 0], obs[..., 1] = e.expand(n, T), t.expand(n, T)
    obs[..., 2:] = 0.5
    action = torch.full((n, T, A), -1.0)
    action[..., 0] = 1000 * e + t
    reward = e + t / 100
    action[:, 0], reward[:, 0] = float("nan"), float("nan")
    chunk = {"obs": obs, "action": action, "reward": reward,
             "task": torch.as_tensor(task, dtype=torch.long).expand(n).clone().view(n, 1).expand(n, T).clone()}
    if tasks is not None:
        chunk["tasks"] = tasks
    torch.save(chunk, path)


@pytest.fixture
def tagged_dir(tmp_path):
    """Three chunks of different dims: (D, A) = (3, 1), (6, 2), (4, 3); 5 + 3 + 4 episodes of 12 slots."""
    save_chunk(tmp_path / "chunk_0.pt", 0, 5, 12, 3, 1, task=0)
    save_chunk(tmp_path / "chunk_1.pt", 5, 3, 12, 6, 2, task=1)
    save_chunk(tmp_path / "chunk_2.pt", 8, 4, 12, 4, 3, task=[2, 0, 1, 2])
    return tmp_path


@MODES
def test_load_pads_and_clears_the_first_slot(data_dir, mmap):
    ds = OfflineDataset.load(data_dir, mmap=mmap)
    assert ds.num_episodes == 12 and ds.episode_length == 21 and (ds.obs_dim, ds.action_dim) == (7, 3)
    assert ds.task_counts() == {0: 4, 1: 4, 2: 4}
    obs, action, reward = ds.episodes(torch.arange(ds.num_episodes))
    assert obs.shape == (12, 21, 7) and action.shape == (12, 21, 3) and reward.shape == (12, 21)
    assert (action[:, 0] == 0).all() and (reward[:, 0] == 0).all() and torch.isfinite(action).all()
    for i, (d, a) in enumerate(TASKS):  # padding beyond a task's own dims is zero
        m = ds.task == i
        assert (obs[m][..., d:] == 0).all() and (action[m][..., a:] == 0).all()
        assert action[m][:, 1:, :a].abs().sum() > 0
    if not mmap:
        assert torch.equal(ds.obs, obs) and torch.equal(ds.action, action)


@MODES
def test_windows_stay_in_one_episode_and_match_the_data(tagged_dir, mmap):
    ds = OfflineDataset.load(tagged_dir, mmap=mmap)
    assert ds.num_episodes == 12 and (ds.obs_dim, ds.action_dim) == (6, 3)
    H = 5
    b = ds.sample(512, H, generator=torch.Generator().manual_seed(0))
    assert b.obs.shape == (H + 1, 512, 6) and b.action.shape == (H, 512, 3) and b.reward.shape == (H, 512, 1)
    assert b.obs.dtype == b.action.dtype == b.reward.dtype == torch.float32 and b.task.dtype == torch.long
    ep, t = b.obs[..., 0].long(), b.obs[..., 1].long()
    assert (ep == ep[0]).all()  # never crosses into another episode
    assert (t[1:] - t[:-1] == 1).all() and (t[0] >= 0).all() and (t[-1] <= ds.episode_length - 1).all()
    assert set(ep[0].tolist()) == set(range(12)) and set(t[0].tolist()) == set(range(12 - H))  # all windows reachable
    assert torch.equal(b.task, ds.task[ep[0]])
    assert torch.equal(b.action[..., 0], (1000 * ep[1:] + t[1:]).float())  # slot t+1 holds the action taken at t
    assert torch.allclose(b.reward[..., 0], ep[1:] + t[1:] / 100)
    dims = torch.tensor([3, 3, 3, 3, 3, 6, 6, 6, 4, 4, 4, 4])[ep[0]]
    adims = torch.tensor([1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3])[ep[0]]
    pad_obs = torch.arange(6).view(1, 1, 6) >= dims.view(1, -1, 1)
    pad_act = torch.arange(3).view(1, 1, 3) >= adims.view(1, -1, 1)
    fill_obs = torch.where(pad_obs, 0.0, 0.5).expand(H + 1, -1, -1)  # stored 0.5 beyond the tags, padded 0
    fill_act = torch.where(pad_act, 0.0, -1.0).expand(H, -1, -1)
    assert torch.equal(b.obs[..., 2:], fill_obs[..., 2:]) and torch.equal(b.action[..., 1:], fill_act[..., 1:])


def _mapped_regions(path: Path) -> list[tuple[int, int]]:
    with open("/proc/self/maps") as f:
        lines = [line.split() for line in f]
    return [tuple(int(x, 16) for x in ln[0].split("-")) for ln in lines if len(ln) >= 6 and ln[5] == str(path)]


def test_mmap_keeps_chunks_mapped_and_samples_like_eager(tagged_dir):
    lazy, eager = OfflineDataset.load(tagged_dir, mmap=True), OfflineDataset.load(tagged_dir)
    assert len(lazy.chunks) == 3 and len(eager.chunks) == 1
    if Path("/proc/self/maps").exists():  # each chunk's tensors are views of its mapped file, not RAM copies
        for c in lazy.chunks:
            regions = _mapped_regions(c.path.resolve())
            for x in (c.obs, c.action, c.reward):
                assert any(lo <= x.data_ptr() < hi for lo, hi in regions), c.path
    assert torch.isnan(lazy.chunks[0].action[:, 0]).all()  # stored as is: NaN at t=0 is never read
    with pytest.raises(DatasetError, match="memory-mapped"):
        lazy.obs
    for seed in range(3):
        a, b = (ds.sample(64, 4, generator=torch.Generator().manual_seed(seed)) for ds in (lazy, eager))
        for f in ("obs", "action", "reward", "terminated", "task"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
    idx = torch.tensor([11, 0, 6, 5])
    for x, y in zip(lazy.episodes(idx), eager.episodes(idx)):
        assert torch.equal(x, y)


def test_mixed_dims_pad_to_the_max_or_the_requested_dims(tagged_dir):
    ds = OfflineDataset.load(tagged_dir, obs_dim=9, action_dim=4, mmap=True)
    assert (ds.obs_dim, ds.action_dim) == (9, 4)
    obs, action, reward = ds.episodes(torch.arange(12))
    assert obs.shape == (12, 12, 9) and (obs[..., 6:] == 0).all() and (action[..., 3:] == 0).all()
    assert ds.sample(8, 3).obs.shape == (4, 8, 9)
    for mmap in (False, True):  # widening after loading: the same as asking at load time
        late = OfflineDataset.load(tagged_dir, mmap=mmap)
        late.pad_to(9, 4)
        assert all(torch.equal(x, y) for x, y in zip(late.episodes(torch.arange(12)), (obs, action, reward)))
        with pytest.raises(DatasetError, match="cannot pad"):
            late.pad_to(8, 4)
    for kw, msg in (({"obs_dim": 5}, "chunk_1.pt: obs_dim=6 exceeds the requested obs_dim=5"),
                    ({"action_dim": 2}, "chunk_2.pt: action_dim=3 exceeds")):
        with pytest.raises(DatasetError, match=msg):
            OfflineDataset.load(tagged_dir, **kw)
    save_chunk(tagged_dir / "chunk_3.pt", 12, 2, 13, 3, 1)
    with pytest.raises(DatasetError, match="disagree on the episode length"):
        OfflineDataset.load(tagged_dir, mmap=True)


@MODES
def test_task_names_are_remapped_onto_the_given_list(tmp_path, mmap):
    save_chunk(tmp_path / "chunk_0.pt", 0, 2, 4, 3, 1, task=[0, 1], tasks=["walker-walk", "cheetah-run"])
    save_chunk(tmp_path / "chunk_1.pt", 2, 3, 4, 3, 1, task=[0, 1, 1], tasks=["cheetah-run", "hopper-hop", "x"])
    save_chunk(tmp_path / "chunk_2.pt", 5, 1, 4, 3, 1, task=2)  # no names: TD-MPC2's own ids, kept
    tasks = ["hopper-hop", "cheetah-run", "walker-walk"]
    ds = OfflineDataset.load(tmp_path, tasks=tasks, mmap=mmap)
    assert ds.task.tolist() == [2, 1, 1, 0, 0, 2] and ds.task_counts() == {0: 2, 1: 2, 2: 2}
    assert ds.task_names == tasks
    assert ds.sample(16, 2, generator=torch.Generator().manual_seed(1)).task.max() <= 2
    with pytest.raises(DatasetError, match=r"chunk_1.pt: tasks \['hopper-hop'\] are not among"):
        OfflineDataset.load(tmp_path, tasks=["walker-walk", "cheetah-run", "z"], mmap=mmap)
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    save_chunk(unnamed / "chunk_2.pt", 0, 1, 4, 3, 1, task=2)
    with pytest.raises(DatasetError, match="chunk_2.pt: task id 2 is out of range for the 2 tasks"):
        OfflineDataset.load(unnamed, tasks=["p", "q"], mmap=mmap)
    with pytest.raises(DatasetError, match="different task lists"):
        OfflineDataset.load(tmp_path, mmap=mmap)


def test_task_name_errors(tmp_path):
    save_chunk(tmp_path / "chunk_0.pt", 0, 2, 4, 3, 1, task=[0, 3], tasks=["a", "b"])
    with pytest.raises(DatasetError, match="task id 3 but the chunk names only 2"):
        OfflineDataset.load(tmp_path)
    save_chunk(tmp_path / "chunk_0.pt", 0, 2, 4, 3, 1, task=[0, 1], tasks="ab")
    with pytest.raises(DatasetError, match="must be a list of task names"):
        load_chunk(tmp_path / "chunk_0.pt")


def test_synthetic_chunks_carry_task_names(tmp_path):
    write_synthetic_chunks(tmp_path, TASKS, episodes_per_task=2, episode_length=5, chunks=2, task_names=["a", "b", "c"])
    assert load_chunk(tmp_path / "chunk_0.pt")["tasks"] == ["a", "b", "c"]  # a plain weights_only load
    ds = OfflineDataset.load(tmp_path, tasks=["c", "b", "a"])
    assert ds.task_counts() == {0: 2, 1: 2, 2: 2}
    assert OfflineDataset.load(tmp_path).task_names == ["a", "b", "c"]


def test_errors_name_the_file_and_the_problem(tmp_path, data_dir):
    with pytest.raises(DatasetError, match="no chunk_"):
        chunk_paths(tmp_path / "empty")
    bad = data_dir / "chunk_9.pt"
    bad.write_bytes(b"not a zip file at all")
    for mmap in (False, True):
        with pytest.raises(DatasetError, match="chunk_9.pt: not a readable dataset chunk"):
            OfflineDataset.load(data_dir, mmap=mmap)
    torch.save({"obs": torch.zeros(2, 5, 3)}, bad)
    with pytest.raises(DatasetError, match="needs keys"):
        load_chunk(bad)
    torch.save({"obs": torch.zeros(2, 5, 3), "action": torch.zeros(2, 4, 1), "reward": torch.zeros(2, 5),
                "task": torch.zeros(2, dtype=torch.long)}, bad)
    with pytest.raises(DatasetError, match="disagree"):
        load_chunk(bad)
    nan_late = {"obs": torch.zeros(2, 21, 3), "action": torch.zeros(2, 21, 1), "reward": torch.zeros(2, 21),
                "task": torch.zeros(2, dtype=torch.long)}
    nan_late["obs"][1, 3, 0] = float("nan")  # in the second episode: only an eager load scans it
    torch.save(nan_late, bad)
    with pytest.raises(DatasetError, match="chunk_9.pt: NaN"):
        load_chunk(bad)
    with pytest.raises(DatasetError, match="chunk_9.pt: NaN"):
        OfflineDataset.load(data_dir)
    assert OfflineDataset.load(data_dir, mmap=True).num_episodes == 14
    nan_late["obs"][0, 2, 1] = float("nan")
    torch.save(nan_late, bad)
    with pytest.raises(DatasetError, match="chunk_9.pt: NaN"):
        OfflineDataset.load(data_dir, mmap=True)
    torch.save({"obs": torch.zeros(2, 9, 3), "action": torch.zeros(2, 9, 1), "reward": torch.zeros(2, 9),
                "task": torch.zeros(2, dtype=torch.long)}, bad)
    with pytest.raises(DatasetError, match="disagree on"):
        OfflineDataset.load(data_dir)
    full = data_dir / "chunk_0.pt"
    full.write_bytes(full.read_bytes()[:200])  # truncated
    with pytest.raises(DatasetError, match="chunk_0.pt"):
        load_chunk(full)


# ------------------------------------------------------------------------------------------------
# replay -> chunks
L = 6  # slots of a complete episode


def fill_replay(buf: ReplayBuffer, plans: list[list[int]]):
    """Write episodes of the planned lengths into each stream (streams advance together while they
    have writes left). Content: obs = [uid, t, ...], action at slot t = [100 uid + t, -uid],
    reward = uid + t / 10, task = uid % 3. Returns ({uid: (stream, planned length)}, per-stream
    list of the (uid, t) written, in order)."""
    S = buf.S
    seq = [[] for _ in range(S)]  # per stream: (uid, t)
    uids, uid = {}, 0
    for s, plan in enumerate(plans):
        for n in plan:
            uids[uid] = (s, n)
            seq[s] += [(uid, t) for t in range(n)]
            uid += 1
    for k in range(max(map(len, seq))):
        mask = torch.tensor([k < len(q) for q in seq])
        cur = [q[k] if k < len(q) else (0, 0) for q in seq]
        u = torch.tensor([c[0] for c in cur], dtype=torch.float32)
        t = torch.tensor([c[1] for c in cur], dtype=torch.float32)
        obs = torch.zeros(S, buf.obs_dim)
        obs[:, 0], obs[:, 1], obs[:, 2] = u, t, 7.0
        action = torch.stack([100 * u + t, -u], 1)
        buf.add(obs, action, u + t / 10, torch.zeros(S), first=t == 0, mask=mask,
                task=(u.long() % 3) if buf.task is not None else None)
    return uids, seq


def expected_complete(buf: ReplayBuffer, uids, seq, length=L) -> set[int]:
    """uids of planned `length`-slot episodes all of whose writes are still in the ring."""
    kept = [q[-buf.T:] for q in seq]
    return {u for u, (s, n) in uids.items() if n == length and sum(1 for c in kept[s] if c[0] == u) == length}


@MODES
def test_replay_round_trip_keeps_every_complete_episode_once(tmp_path, mmap):
    buf = ReplayBuffer(capacity=40, obs_dim=4, action_dim=2, horizon=2, num_streams=2, multitask=True)
    # stream 0 wraps (37 writes into 20 slots): its oldest kept episode is cut, its last still running;
    # stream 1 does not wrap; the 3-slot episodes ended early and are not L-slot episodes.
    uids, seq = fill_replay(buf, [[6, 6, 3, 6, 6, 6, 4], [6, 3, 6, 2]])
    assert int(buf.ptr[0]) == 37 and buf.T == 20
    want = expected_complete(buf, uids, seq)
    assert len(want) == 4
    paths = replay_to_chunks(buf, tmp_path, task_names=["a", "b", "c"], episodes_per_chunk=3)
    assert [p.name for p in paths] == ["chunk_0.pt", "chunk_1.pt"]
    raw = load_chunk(paths[0], check_nan="none")
    assert raw["obs"].dtype == torch.float32 and raw["tasks"] == ["a", "b", "c"]
    assert torch.isnan(raw["action"][:, 0]).all() and torch.isnan(raw["reward"][:, 0]).all()
    ds = OfflineDataset.load(tmp_path, mmap=mmap)
    assert ds.num_episodes == 4 and ds.episode_length == L and (ds.obs_dim, ds.action_dim) == (4, 2)
    obs, action, reward = ds.episodes(torch.arange(ds.num_episodes))
    u = obs[:, 0, 0].long()
    assert sorted(u.tolist()) == sorted(want)  # each complete episode exactly once
    t = torch.arange(L).float()
    uf = u.float().view(-1, 1)
    assert torch.equal(obs[..., 0], uf.expand(-1, L)) and torch.equal(obs[..., 1], t.expand(len(u), L))
    assert torch.equal(action[:, 1:, 0], 100 * uf + t[1:]) and torch.equal(action[:, 1:, 1], -uf.expand(-1, L - 1))
    assert torch.allclose(reward[:, 1:], uf + t[1:] / 10)
    assert torch.equal(ds.task, u % 3)
    b = ds.sample(32, 2, generator=torch.Generator().manual_seed(0))  # trainable windows
    assert torch.equal(b.action[..., 0], 100 * b.obs[1:, :, 0] + b.obs[1:, :, 1])

    # Another episode length, and re-exporting replaces the older, larger export.
    paths = replay_to_chunks(buf, tmp_path, task_names=["a", "b", "c"], episode_slots=3)
    assert [p.name for p in chunk_paths(tmp_path)] == ["chunk_0.pt"] == [p.name for p in paths]
    ds3 = OfflineDataset.load(tmp_path, mmap=mmap)
    assert ds3.episodes(torch.arange(ds3.num_episodes))[0][:, 0, 0].tolist() == \
        sorted(expected_complete(buf, uids, seq, 3)) == [8]  # stream 0's 4-slot tail is not a 3-slot episode


def test_single_task_replay_export_and_errors(tmp_path):
    buf = ReplayBuffer(capacity=24, obs_dim=3, action_dim=2, horizon=1, num_streams=2)
    uids, seq = fill_replay(buf, [[6, 6], [6, 2]])
    replay_to_chunks(buf, tmp_path, task_names=["x", "y"], task_index=1)
    ds = OfflineDataset.load(tmp_path, tasks=["y"])
    assert ds.num_episodes == 3 and ds.task_counts() == {0: 3}
    with pytest.raises(DatasetError, match="no complete episode of 8 slots"):
        replay_to_chunks(buf, tmp_path / "none", task_names=["x"], episode_slots=8)
    with pytest.raises(DatasetError, match="do not all index"):
        replay_to_chunks(buf, tmp_path / "bad", task_names=["x"], task_index=1)


def test_export_cli_from_a_saved_run(tmp_path, capsys):
    buf = ReplayBuffer(capacity=64, obs_dim=4, action_dim=2, horizon=2, num_streams=2, multitask=True)
    uids, seq = fill_replay(buf, [[6, 6, 2], [6]])  # filled prefix only: 14 of 32 slots per stream
    run = tmp_path / "run"
    cfg = {"task": "mt3", "tasks": ["a", "b", "c"], "obs_dim": 4, "action_dim": 2, "horizon": 2,
           "buffer_size": 64, "num_envs": 2, "multitask": True}
    atomic_save(buf.state_dict(), run / "replay_000000014.pt")
    atomic_save({"format": FORMAT, "config": cfg, "agent": {}, "trainer": {}, "replay_file": "replay_000000014.pt"},
                run / "checkpoint.pt")
    assert buf.state_dict()["obs"].shape[1] == 14
    assert export_main([str(run)]) == 0
    ds = OfflineDataset.load(run / "dataset", tasks=["a", "b", "c"])
    assert sorted(ds.episodes(torch.arange(3))[0][:, 0, 0].long().tolist()) == [0, 1, 3]
    assert torch.equal(ds.task, ds.episodes(torch.arange(3))[0][:, 0, 0].long() % 3)
    assert export_main([str(run), str(tmp_path / "out"), "--episode-slots", "2"]) == 0
    assert OfflineDataset.load(tmp_path / "out").num_episodes == 1
    atomic_save({"format": FORMAT, "config": cfg, "agent": {}, "trainer": {}, "replay_file": None}, run / "checkpoint.pt")
    assert export_main([str(run)]) == 2
    assert "save_replay=false" in capsys.readouterr().err


@pytest.mark.parametrize("mmap", [False, True])
def test_tdmpc2_tensordict_chunks_load(tmp_path, mmap):
    """TD-MPC2 saved TensorDicts of batch size (episodes, T) with task [episodes, T], NaN action and
    reward at t=0 and extra keys (episode): they load without full unpickling, ids kept as stored."""
    tensordict = pytest.importorskip("tensordict")
    n, T = 3, 11
    action, reward = torch.rand(n, T, 2) * 2 - 1, torch.rand(n, T)
    action[:, 0], reward[:, 0] = float("nan"), float("nan")
    obs = torch.arange(n * T, dtype=torch.float32).view(n, T, 1).expand(n, T, 4).clone()
    td = tensordict.TensorDict({"obs": obs, "action": action, "reward": reward,
                                "task": torch.tensor([0, 2, 1]).view(n, 1).expand(n, T).clone(),
                                "episode": torch.arange(n).view(n, 1).expand(n, T).clone()}, batch_size=(n, T))
    torch.save(td, tmp_path / "chunk_0.pt")
    ds = OfflineDataset.load(tmp_path, tasks=["a", "b", "c"], mmap=mmap)
    assert (ds.num_episodes, ds.episode_length, ds.obs_dim, ds.action_dim) == (n, T, 4, 2)
    assert ds.task.tolist() == [0, 2, 1]
    b = ds.sample(64, 3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(b.action).all() and torch.isfinite(b.reward).all()
    slot = b.obs[..., 0].long()  # episode * T + t
    ep, t = slot // T, slot % T
    assert (ep == ep[0]).all() and (t[1:] - t[:-1] == 1).all()
    assert torch.equal(b.action, action[ep[1:], t[1:]]) and torch.equal(b.task, torch.tensor([0, 2, 1])[ep[0]])

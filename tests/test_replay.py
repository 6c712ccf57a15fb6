"""Replay: windows of H+1 steps within episodes, streams, wrap-around, state round trip."""
import pytest
import torch

from mbdpo_fast.data.replay import ReplayBuffer
from mbdpo_fast.errors import ReplayCapacityError


def fill_episode(buf, ep_id, length, stream_mask=None):
    """Observation = (episode id, step); action/reward leading into step t encode t."""
    S = buf.S
    obs = lambda t: torch.tensor([[ep_id, t, 0.0]] * S)
    buf.add(obs(0), None, None, None, first=torch.ones(S, dtype=torch.bool), mask=stream_mask)
    for t in range(1, length + 1):
        buf.add(obs(t), torch.full((S, 2), float(t)), torch.full((S,), float(t)), torch.zeros(S),
                first=torch.zeros(S, dtype=torch.bool), mask=stream_mask)


def check_windows(batch, H):
    ep, step = batch.obs[..., 0], batch.obs[..., 1]
    assert (ep == ep[0:1]).all(), "window crosses an episode boundary"
    torch.testing.assert_close(step - step[0:1], torch.arange(H + 1.0).view(-1, 1).expand_as(step))
    # the action/reward stored with o_{t+1} are the ones taken after o_t
    torch.testing.assert_close(batch.action[..., 0], step[1:])
    torch.testing.assert_close(batch.reward[..., 0], step[1:])


@pytest.mark.parametrize("H", [1, 3, 5])
def test_sampled_windows_stay_inside_episodes(H):
    buf = ReplayBuffer(10_000, 3, 2, H)
    for e, L in enumerate([7, 3, 12, H, 40]):
        fill_episode(buf, e, L)
    batch = buf.sample(4096)
    assert batch.obs.shape == (H + 1, 4096, 3) and batch.action.shape == (H, 4096, 2)
    assert batch.reward.shape == (H, 4096, 1) and batch.terminated.shape == (H, 4096, 1)
    check_windows(batch, H)
    # every valid start is reachable: each episode of length L has L - H + 1 starts
    assert buf.num_valid() == sum(max(L - H + 1, 0) for L in [7, 3, 12, H, 40])


def test_wraparound_overwrites_and_invalidates():
    H = 3
    buf = ReplayBuffer(50, 3, 2, H)
    for e in range(20):
        fill_episode(buf, e, 9)  # 10 slots each: the buffer wraps four times
    batch = buf.sample(2048)
    check_windows(batch, H)
    assert batch.obs[0, :, 0].min() >= 15  # only the newest episodes survive
    assert len(buf) == 50


def test_streams_are_independent_and_masked_writes():
    H = 2
    buf = ReplayBuffer(300, 3, 2, H, num_streams=3)
    S = 3
    # streams advance at different times: stream 1 only every other write
    for t in range(40):
        mask = torch.tensor([True, t % 2 == 0, True])
        first = torch.tensor([t % 10 == 0, t % 20 == 0, t % 7 == 0])
        obs = torch.stack([torch.tensor([s * 1000.0 + (t // 10 if s == 0 else (t // 20 if s == 1 else t // 7)), 0, s]) for s in range(S)])
        buf.add(obs, torch.zeros(S, 2), torch.zeros(S), torch.zeros(S), first=first, mask=mask)
    batch = buf.sample(4000)
    # windows never mix streams or episodes
    ep = batch.obs[..., 0]
    assert (ep == ep[0:1]).all()
    assert set(batch.obs[0, :, 2].long().tolist()) == {0, 1, 2}
    assert buf.ptr.tolist() == [40, 20, 40]


def test_state_dict_round_trip():
    buf = ReplayBuffer(1000, 3, 2, 3)
    for e in range(4):
        fill_episode(buf, e, 15)
    state = buf.state_dict()
    assert state["obs"].shape[1] == 64  # only the filled slots are saved
    other = ReplayBuffer(1000, 3, 2, 3)
    other.load_state_dict(state)
    for name in ("obs", "action", "reward", "terminated", "step", "valid", "ptr"):
        assert torch.equal(getattr(buf, name), getattr(other, name)), name
    with pytest.raises(ValueError, match="horizon"):
        ReplayBuffer(1000, 3, 2, 5).load_state_dict(state)


def test_capacity_errors():
    with pytest.raises(ReplayCapacityError):
        ReplayBuffer(2, 3, 2, 3)
    with pytest.raises(ReplayCapacityError, match="GiB"):
        ReplayBuffer(10**13, 100, 10, 3)


def test_multitask_buffer_returns_task_ids():
    buf = ReplayBuffer(100, 3, 2, 1, multitask=True)
    buf.add(torch.zeros(1, 3), None, None, None, first=torch.ones(1, dtype=torch.bool), task=torch.tensor([4]))
    buf.add(torch.ones(1, 3), torch.zeros(1, 2), torch.zeros(1), torch.zeros(1), first=torch.zeros(1, dtype=torch.bool),
            task=torch.tensor([4]))
    assert buf.sample(5).task.tolist() == [4] * 5

"""TabularTask: the grid-world as a text maze equals the former table-driven GridTask bit for
bit; arrays, .npz and mazes; start distributions; bad tables named; the gymnax face; the
``tabular`` config task."""
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dra_jax.config import ConfigError
from dra_jax.envs import gridworld as gw
from dra_jax.envs import tabular_gymnax as gw_gymnax
from dra_jax.envs.tabular import TabularTask
from dra_jax.envs.tabular_gymnax import TabularEnv
from dra_jax.lane import agent, batching

MAZE = [".......#G",
        "..#....#.",
        "S.#....#.",
        "..#......",
        ".....#...",
        "........."]
SWITCHED = ["......G..",
            "..#....#.",
            "S.#....#.",
            "..#......",
            ".....#...",
            "........."]
DRA = dict(alpha_q=0.1, alpha_sigma=0.1, beta=10.0, gamma=1.0, lam=0.2, sigma_base=5.0,
           sigma0=3.0, sigma_min=0.01, sigma_max=100.0, psi="A", allocation="flexible",
           learn_q=True, learn_sigma=True)


# --- the table-driven GridTask as it stood before TabularTask (frozen here for comparison) ---

def _old_tables(layouts):
    rows, cols = layouts[0].rows, layouts[0].cols
    n = rows * cols
    nxt = np.zeros((len(layouts), n, 4), np.int32)
    rew = np.full((len(layouts), n, 4), -1.0, np.float32)
    term = np.zeros((len(layouts), n), bool)
    obst = np.zeros((len(layouts), n), bool)
    for m, lay in enumerate(layouts):
        blocked = set(lay.obstacles)
        for o in blocked:
            obst[m, lay.index(o)] = True
        term[m, lay.index(lay.goal)] = True
        for r in range(rows):
            for c in range(cols):
                s = r * cols + c
                for a, (dr, dc) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
                    rr, cc = r + dr, c + dc
                    if not (0 <= rr < rows and 0 <= cc < cols) or (rr, cc) in blocked:
                        rr, cc = r, c
                    nxt[m, s, a] = rr * cols + cc
                    if (rr, cc) == lay.goal:
                        rew[m, s, a] = 10.0
                if (r, c) == lay.goal:
                    nxt[m, s, :] = s
                    rew[m, s, :] = 0.0
    return nxt, rew, term, obst


@dataclass(frozen=True, eq=False)
class OldGridTask:
    with_switch: bool = False
    fix_mask: bool = False  # the old mask without the switched maze's cells when not switching
    packed: np.ndarray = field(init=False, repr=False)
    n_states = 54
    n_actions = 4

    def __post_init__(self):
        lay = gw.Layout()
        nxt, rew, term, obst = _old_tables((lay, lay.switched()))
        term_next = np.take_along_axis(term[:, :, None], nxt, axis=1)
        object.__setattr__(self, "packed", np.stack([nxt.astype(np.float32), rew,
                                                     term_next.astype(np.float32)], -1))
        object.__setattr__(self, "_tt", (term, obst))

    @property
    def learnable(self):
        term, obst = self._tt
        if self.fix_mask and not self.with_switch:
            free = ~obst[0] & ~term[0]
        else:
            free = ~(obst[0] & obst[1]) & ~(term[0] & term[1])
        return np.repeat(free[:, None], 4, axis=1)

    def reset(self, u, tparams, episode):
        return jnp.asarray(gw.Layout().index(gw.START), jnp.int32)

    def step(self, state, action, tparams, episode):
        m = (episode >= tparams["switch_episode"]).astype(jnp.int32) if self.with_switch else jnp.int32(0)
        row = jnp.asarray(self.packed)[m, state, action]
        return row[0].astype(jnp.int32), row[1], row[2] > 0.5

    def row(self, state, tparams):
        return state

    def q_star(self):
        return gw.shortest_path_q(gw.Layout())


def _train(task, st, dras, seeds, switch_episode=3000):
    params = agent.stack_params([agent.make_run_params(d, s, {"switch_episode": np.int32(switch_episode)})
                                 for d, s in zip(dras, seeds)])
    return batching.train_batch(task, st, params)


def test_text_maze_is_the_paper_grid_world():
    assert gw.Layout().to_maze() == MAZE
    assert gw.Layout().switched().to_maze() == SWITCHED
    t = TabularTask.from_maze(MAZE, SWITCHED)
    nxt, rew, term, _ = _old_tables((gw.Layout(), gw.Layout().switched()))
    np.testing.assert_array_equal(t.tables.next_state, nxt)
    np.testing.assert_array_equal(t.tables.reward, rew)
    np.testing.assert_array_equal(t.tables.terminal, term)
    assert t.tables.start == 18 and t.grid_shape == (6, 9)


@pytest.mark.parametrize("switch", [True, False])
def test_training_is_bit_identical_to_the_former_grid_task(switch):
    """Same compiled algorithm, same numbers: q, sigma, curves, steps, truncations. Without the
    switch the former task also charged the KL cost of 8 memories the policy never reads (the
    obstacle (0,7) and the goal (0,8), opened only by the switch); TabularTask counts only
    reachable non-goal cells, so there the former task is compared with that mask corrected."""
    new = gw.GridTask(with_switch=switch)
    old = OldGridTask(with_switch=switch, fix_mask=True)
    np.testing.assert_array_equal(new.learnable, old.learnable)
    if not switch:  # what changed: exactly those 8 memories
        diff = OldGridTask(with_switch=False).learnable & ~new.learnable
        assert sorted(set(np.argwhere(diff)[:, 0])) == [7, 8]
    st = agent.AgentStatic(episodes=40, n_traj=3, max_steps=60, eval_every=10, n_rollouts=4,
                           snapshots=(10, 30), need_R=True)
    dras = [DRA, dict(DRA, psi="R", sigma0=1.0), dict(DRA, allocation="equal_sgd", lam=0.5),
            dict(DRA, psi="Q", sigma0=5.0)]
    a = _train(new, st, dras, [0, 1, 2, 3], switch_episode=20)
    b = _train(old, st, dras, [0, 1, 2, 3], switch_episode=20)
    for name in ("q", "sigma", "curves", "snap_q", "snap_sigma", "env_steps", "truncations"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert np.abs(a.sigma - 3.0).max() > 0.1  # something was learned


def test_maze_walls_obstacles_goal_switch():
    t = TabularTask.from_maze(MAZE, SWITCHED)
    idx = lambda r, c: r * 9 + c  # noqa: E731
    tp = {"switch_episode": jnp.int32(5)}

    def step(s, a, ep=0):
        s2, r, term = t.step(jnp.int32(s), jnp.int32(a), tp, jnp.int32(ep))
        return int(s2), float(r), bool(term)

    cells = np.array([list(r) for r in MAZE])
    for r, c in np.argwhere(cells == "#"):  # every obstacle blocks every move into it
        for a, (dr, dc) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
            rr, cc = r - dr, c - dc  # the neighbour that would move into (r, c) with action a
            if 0 <= rr < 6 and 0 <= cc < 9 and cells[rr, cc] != "#" and cells[rr, cc] != "G":
                assert step(idx(rr, cc), a) == (idx(rr, cc), -1.0, False), (r, c, a)
    for r in range(6):  # walls: off the grid stays
        assert step(idx(r, 0), 2)[0] == idx(r, 0) and step(idx(r, 8), 3)[0] == idx(r, 8) or r == 0
    for c in range(9):
        assert step(idx(0, c), 0)[0] == idx(0, c) or c == 8
        assert step(idx(5, c), 1)[0] == idx(5, c)
    assert step(idx(1, 8), 0) == (idx(0, 8), 10.0, True)
    assert step(idx(1, 8), 0, ep=5) == (idx(0, 8), -1.0, False)
    assert step(idx(0, 5), 3, ep=5) == (idx(0, 6), 10.0, True)
    assert step(idx(0, 6), 3, ep=4) == (idx(0, 6), -1.0, False)


def test_arrays_npz_start_distribution_and_q_star(tmp_path):
    # a 4-state chain: 0 <-> 1 <-> 2 -> 3 (goal); action 0 left, 1 right
    nxt = np.array([[0, 1], [0, 2], [1, 3], [3, 3]])
    rew = np.array([[-1, -1], [-1, -1], [-1, 5], [0, 0]], np.float32)
    term = np.array([False, False, False, True])
    t = TabularTask.from_arrays(nxt, rew, term, start_probs=[0.25, 0.75, 0.0, 0.0])
    # V = (3, 4, 5, 0) by hand: q(s, a) = r(s, a) + V(next)
    np.testing.assert_allclose(t.q_star()[:3], [[2, 3], [2, 4], [3, 5]])
    assert t.learnable[:, 0].tolist() == [True, True, True, False]
    us = jnp.linspace(0.0, 0.999, 1000)
    starts = np.asarray(jax.vmap(lambda u: t.reset(u, {}, 0))(us))
    assert set(starts) == {0, 1} and abs((starts == 0).mean() - 0.25) < 0.01
    np.savez(tmp_path / "chain.npz", next_state=nxt, reward=rew, terminal=term, start=np.int64(1))
    t2 = TabularTask.from_npz(tmp_path / "chain.npz")
    np.testing.assert_array_equal(t2.tables.next_state, t.tables.next_state)
    assert t2.tables.start == 1 and int(t2.reset(0.3, {}, 0)) == 1


@pytest.mark.parametrize("kwargs, key, text", [
    (dict(next_state=np.zeros((3, 2)), reward=np.zeros((3, 2)), terminal=np.zeros(3, bool), start=0),
     "next_state", "integers"),
    (dict(next_state=np.array([[0, 3], [0, 0], [0, 0]]), reward=np.zeros((3, 2)),
          terminal=np.zeros(3, bool), start=0), "next_state", "[0, 2]"),
    (dict(next_state=np.zeros((3, 2), int), reward=np.zeros((2, 2)), terminal=np.zeros(3, bool),
          start=0), "reward", "shape"),
    (dict(next_state=np.zeros((3, 2), int), reward=np.zeros((3, 2)), terminal=np.zeros(3),
          start=0), "terminal", "booleans"),
    (dict(next_state=np.zeros((3, 2), int), reward=np.zeros((3, 2)), terminal=np.zeros(3, bool),
          start=5), "start", "[0, 2]"),
    (dict(next_state=np.zeros((3, 2), int), reward=np.zeros((3, 2)),
          terminal=np.array([True, False, False]), start=0), "start", "terminal"),
    (dict(next_state=np.zeros((3, 2), int), reward=np.zeros((3, 2)), terminal=np.zeros(3, bool),
          start_probs=[0.5, 0.6, 0.0]), "start_probs", "summing to 1"),
])
def test_bad_tables_are_named(kwargs, key, text):
    with pytest.raises(ConfigError) as e:
        TabularTask.from_arrays(**kwargs)
    assert e.value.key == key and text in str(e.value)


@pytest.mark.parametrize("maze, stages, key, text", [
    (["S.#", "..X"], (), "maze", "'X'"),
    (["S..", "..."], (), "maze", "no goal"),
    ([".G.", "..."], (), "maze", "no start"),
    (["S.G", ".."], (), "maze", "unequal"),
    (["S.G"], (["S..G"],), "maze[1]", "1 x 4"),
    (["S.G"], ([".SG"],), "maze[1]", "start cells"),
])
def test_bad_mazes_are_named(maze, stages, key, text):
    with pytest.raises(ConfigError) as e:
        TabularTask.from_maze(maze, *stages)
    assert e.value.key == key and text in str(e.value)


def test_start_on_an_obstacle_is_refused():
    with pytest.raises(ConfigError, match="start: cell \\(1, 2\\) is an obstacle"):
        gw.Layout(start=(1, 2)).to_maze()


def test_gymnax_face_agrees_with_the_lane_task():
    task = gw.GridTask(with_switch=True)
    env = TabularEnv(task)
    params = env.default_params
    key = jax.random.key(0)
    obs, state = env.reset(key, params)
    assert int(obs) == 18
    for a in np.asarray(jax.random.randint(key, (200,), 0, 4)):
        _, state2, r, done, _ = env.step_env(key, state, int(a), params)
        s2, r2, t2 = task.step(state.pos, jnp.int32(a), {"switch_episode": 99}, jnp.int32(0))
        assert (int(state2.pos), float(r), bool(done)) == (int(s2), float(r2), bool(t2))
        if done:
            break
        state = state2
    st = gw_gymnax.EnvState(pos=jnp.int32(5), time=0)
    _, st2, r, done, _ = env.step_env(key, st, 3, params.replace(stage=1))
    assert (int(st2.pos), float(r), bool(done)) == (6, 10.0, True)

"""Grid-world dynamics: walls, obstacles, goal, termination, the switch; gymnax face = lane face."""
import jax
import jax.numpy as jnp
import numpy as np

from dra_jax.envs import gridworld as gw
from dra_jax.envs import tabular_gymnax as gw_gymnax

UP, DOWN, LEFT, RIGHT = range(4)
T = gw.GridTask(with_switch=True)


def idx(r, c):
    return r * gw.COLS + c


def step(pos, a, episode=0, switch_episode=3000):
    s, r, term = T.step(jnp.int32(pos), jnp.int32(a), {"switch_episode": jnp.int32(switch_episode)},
                        jnp.int32(episode))
    return int(s), float(r), bool(term)


def test_walls_obstacles_goal_and_rewards():
    assert step(idx(0, 0), UP) == (idx(0, 0), -1.0, False)  # off the grid: stay
    assert step(idx(0, 0), LEFT) == (idx(0, 0), -1.0, False)
    assert step(idx(5, 8), DOWN) == (idx(5, 8), -1.0, False)
    assert step(idx(2, 1), RIGHT) == (idx(2, 1), -1.0, False)  # (2,2) is an obstacle
    assert step(idx(4, 4), RIGHT) == (idx(4, 4), -1.0, False)  # (4,5) is an obstacle
    assert step(idx(2, 0), DOWN) == (idx(3, 0), -1.0, False)
    assert step(idx(1, 8), UP) == (idx(0, 8), 10.0, True)  # the goal: +10, terminal
    assert step(idx(0, 6), RIGHT) == (idx(0, 6), -1.0, False)  # (0,7) is an obstacle before the switch


def test_switch_removes_obstacle_and_moves_goal():
    assert step(idx(0, 5), RIGHT, episode=3000) == (idx(0, 6), 10.0, True)  # new goal (0,6)
    assert step(idx(0, 5), RIGHT, episode=2999) == (idx(0, 6), -1.0, False)
    assert step(idx(0, 8), LEFT, episode=3000) == (idx(0, 7), -1.0, False)  # (0,7) open now
    assert step(idx(1, 8), UP, episode=3000) == (idx(0, 8), -1.0, False)  # old goal: plain cell


def test_shortest_paths():
    d = gw.bfs_distance(gw.Layout())
    assert d[idx(*gw.START)] == 14
    d2 = gw.bfs_distance(gw.Layout().switched())
    assert d2[idx(*gw.START)] == 8
    q = gw.shortest_path_q(gw.Layout())
    assert q[idx(*gw.START)].max() == -13 + 10  # 13 steps at -1, then +10


def test_gymnax_environment_agrees_with_the_lane_task():
    env = gw_gymnax.GridWorld()
    params = env.default_params
    key = jax.random.key(0)
    obs, state = env.reset(key, params)
    assert int(obs) == idx(*gw.START)
    actions = jax.random.randint(key, (300,), 0, 4)
    pos = idx(*gw.START)
    for a in np.asarray(actions):
        _, state2, r, done, _ = env.step_env(key, state, int(a), params)
        s2, r2, term2 = step(pos, int(a))
        assert (int(state2.pos), float(r), bool(done)) == (s2, r2, term2)
        if term2:
            break
        state, pos = state2, s2
    # the switched maze through the traced parameter
    p1 = params.replace(stage=1)
    _, st, _ = (None, gw_gymnax.EnvState(pos=jnp.int32(idx(0, 5)), time=0), None)
    _, st2, r, done, _ = env.step_env(key, st, RIGHT, p1)
    assert (int(st2.pos), float(r), bool(done)) == (idx(0, 6), 10.0, True)
    # jit + vmap over actions
    f = jax.jit(jax.vmap(lambda a: env.step_env(key, st, a, params)[1].pos))
    np.testing.assert_array_equal(f(jnp.arange(4)), [idx(0, 5), idx(1, 5), idx(0, 4), idx(0, 6)])


# the maze of docs/design.md, written out independently of dra_jax.envs.gridworld
ROWS, COLS = 6, 9
OBSTACLES = {(1, 2), (2, 2), (3, 2), (0, 7), (1, 7), (2, 7), (4, 5)}
MOVES = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}


def _design_step(cell, a, switched):
    obstacles = OBSTACLES - {(0, 7)} if switched else OBSTACLES
    goal = (0, 6) if switched else (0, 8)
    r, c = cell[0] + MOVES[a][0], cell[1] + MOVES[a][1]
    nxt = (r, c) if 0 <= r < ROWS and 0 <= c < COLS and (r, c) not in obstacles else cell
    return nxt, (10.0 if nxt == goal else -1.0), nxt == goal


def test_every_cell_action_wall_obstacle_and_goal_of_both_mazes():
    """All 54 x 4 moves of the original and the switched maze against the design's rules (a
    move off the grid or into an obstacle stays; +10 and termination on the goal, else -1),
    and the start, goal and learned memories."""
    cells = [(r, c) for r in range(ROWS) for c in range(COLS)]
    pos = jnp.asarray([idx(*cell) for cell in cells for _ in range(4)], jnp.int32)
    acts = jnp.asarray([a for _ in cells for a in range(4)], jnp.int32)
    for switched in (False, True):
        episode = 3000 if switched else 0
        s2, r, term = jax.vmap(lambda p, a: T.step(p, a, {"switch_episode": jnp.int32(3000)},
                                                   jnp.int32(episode)))(pos, acts)
        obstacles = OBSTACLES - {(0, 7)} if switched else OBSTACLES
        checked = 0
        for i, (cell, a) in enumerate(zip([cl for cl in cells for _ in range(4)], np.asarray(acts))):
            if cell in obstacles or cell == ((0, 6) if switched else (0, 8)):
                continue  # never occupied / terminal: never stepped from
            nxt, rew, done = _design_step(cell, int(a), switched)
            assert (int(s2[i]), float(r[i]), bool(term[i])) == (idx(*nxt), rew, done), (cell, a, switched)
            checked += 1
        assert checked == 4 * (ROWS * COLS - len(obstacles) - 1)
    assert int(T.reset(jnp.float32(0.5), {}, jnp.int32(0))) == idx(2, 0)
    # learned memories: every cell that is free in some maze and not the goal of both
    learn = T.learnable
    for cell in cells:
        expect = cell not in (OBSTACLES - {(0, 7)})
        assert bool(learn[idx(*cell)].all()) == expect and bool(learn[idx(*cell)].any()) == expect, cell

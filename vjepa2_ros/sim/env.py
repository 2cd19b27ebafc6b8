"""Fetch arm simulator with a fixed third-person camera, speaking the project's 7-D state and action.

State  = [x, y, z (m, world), roll, pitch, yaw (rad), gripper closedness in [0, 1]].
Action = [dx, dy, dz (m), droll, dpitch, dyaw (ignored: Fetch holds the grip orientation), dgripper].

The orientation triple is the rotation of the grip site *relative to a fixed reference grip orientation*
(R_rel = R · R_refᵀ, scipy euler 'xyz'), so it stays near 0 instead of sitting at the gimbal lock of the raw
Fetch orientation (see ../shared/sim/NOTES.md). Left-multiplied deltas (DROID convention) compose on it
unchanged: R_rel,t+1 · R_rel,tᵀ = R_t+1 · R_tᵀ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is imported

FETCH_STEP_M = 0.05  # Fetch's own largest move per step; ours by default
GRIP_OPEN_M, GRIP_CLOSED_M = 0.100, 0.003  # finger-joint sum when fully open / closed
GRASP_FINGER_GAP = -0.0012  # each finger joint minus the block's half edge, closed on the block (m, measured)
HOLD_SAG_M = 0.002  # pick_and_place: a grip this close to its commanded target is re-settled at the target
GRASP_OFFSET = np.array([0.002, 0.0, 0.0])  # block centre minus grip site while held (m, measured; z within 4 mm)
STATE_DIM = ACTION_DIM = 7
REACH_HOME_HEIGHT = 0.13  # FetchReach's initial grip height above the table top (m): the workspace reference


class SimError(RuntimeError):
    """Raised on a bad request to the simulator (unknown task, malformed action, unreachable target)."""


@dataclass
class SimConfig:
    """Camera, workspace and goal ranges. Offsets are relative to the initial grip position (≈1.34, 0.75, 0.53)."""

    task: str = "reach"
    image_size: int = 64
    # the task's camera (vjepa2_ros.sim.tasks) unless `camera` is set: {lookat, distance, azimuth, elevation[, fovy]}
    camera: dict | None = None
    # True: every move re-settles the arm from its home posture, so a grip position always shows the same arm
    # posture (what a Cartesian controller with a nullspace posture task does). False: the redundant joints drift
    # with the path, and the goal image cannot be matched exactly (push: two paths to one grip position differ by
    # 6.5 grey levels per pixel). Reach re-settles before the move; push moves physically (so the arm pushes the
    # block) and then re-settles for `resettle_steps` with the block parked and restored. None = True.
    posture_reset: bool | None = None
    resettle_steps: int = 8  # push: env steps of the re-settle after a move (6 already match 30 to the pixel)
    max_step: float = FETCH_STEP_M  # largest end-effector move per step (m)
    workspace_low: tuple[float, float, float] = (-0.22, -0.28, -0.11)  # z floor ≈ 0.425 m, just above the table
    workspace_high: tuple[float, float, float] = (0.22, 0.28, 0.22)
    # push: the x/y half-range of the workspace around home (m), what the push camera sees whole (the wider reach
    # range let the grip leave the frame toward the robot), and a planar pusher: the grip stays at the block's
    # centre height (views from above hide height; going around the block replaces going over it)
    push_workspace_xy: tuple[float, float] = (0.20, 0.20)
    push_planar: bool = True
    goal_low: tuple[float, float, float] = (-0.15, -0.15, -0.08)
    goal_high: tuple[float, float, float] = (0.15, 0.15, 0.12)
    min_start_goal_distance: float = 0.06  # random starts are at least this far from the goal (m)
    physics_steps_per_action: int = 4  # env steps (0.04 s each) per action: the arm settles within ~0.3 mm
    settle_steps: int = 30  # env steps to settle after teleporting the mocap (lands within ~0.2 mm)
    object_goal_range: float = 0.12  # push: object goal offset range in x/y (m)
    block_start_range: float = 0.10  # push: block start offset range in x/y around the initial grip position (m)
    block_half_size: float | None = 0.035  # push: half the block's edge (m), 7 cm cube; None = Fetch's own 0.025
    # push: the block's colour (RGBA, flat, no texture): red stands out from the white table and the blue-grey arm,
    # so the block weighs more in image energies; None = Fetch's grey texture
    block_rgba: tuple[float, float, float, float] | None = (0.9, 0.1, 0.1, 1.0)
    push_clearance: float = 0.05  # push: grip site to block face, behind the block, before a push (m)
    goal_clearance: float = 0.03  # push: the same in the goal image (where a push leaves the grip; clear of it)
    # pick_and_place: the goal's height above the block's resting height (m, uniform in this range; Fetch's goals
    # can be in the air), and the grip's height above the block's centre in the approach pose (open, above it)
    pick_goal_height: tuple[float, float] = (0.0, 0.15)
    pick_approach_height: float = 0.08


def _rotation_from_matrix(mat: np.ndarray):
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(mat, dtype=np.float64).reshape(3, 3))


class FetchSim:
    """One Fetch scene: reset to random starts, 7-D delta actions, renders, goal states and goal images."""

    def __init__(self, config: SimConfig | None = None, seed: int | None = None):
        self.cfg = config or SimConfig()
        from vjepa2_ros.sim.tasks import TaskError, get_task

        try:
            self.task = get_task(self.cfg.task)
        except TaskError as exc:
            raise SimError(str(exc)) from None
        if self.cfg.image_size < 16:
            raise SimError(f"image_size must be at least 16 px, got {self.cfg.image_size}")
        try:
            import gymnasium as gym
            import gymnasium_robotics
            import mujoco
        except ImportError as exc:  # optional extra
            raise SimError(f"the simulator needs the [sim] extra (pip install -e '.[sim]'): {exc}") from exc
        gym.register_envs(gymnasium_robotics)
        self._mj = mujoco
        cam = dict(self.cfg.camera if self.cfg.camera is not None else self.task.camera)
        cam["lookat"] = np.asarray(cam["lookat"], dtype=np.float64)
        fovy = cam.pop("fovy", None)  # vertical field of view (deg); not a free-camera attribute, so set on the model
        size = self.cfg.image_size
        self._env = gym.make(
            self.task.gym_id, render_mode="rgb_array", width=size, height=size, default_camera_config=cam
        ).unwrapped
        self.model, self.data = self._env.model, self._env.data
        if fovy is not None:
            self.model.vis.global_.fovy = float(fovy)
        self._hide_markers()
        self.block_half = None if not self.task.has_block else self._set_block_size(self.cfg.block_half_size)
        if self.block_half is not None and self.cfg.block_rgba is not None:
            self._set_block_colour(self.cfg.block_rgba)
        self.table_top = self._table_top()
        self.rng = np.random.default_rng(seed)
        self._env.reset(seed=int(self.rng.integers(2**31)))
        self.home = self._grip_pos().copy()  # the workspace's reference point
        if self.block_half is not None:  # Fetch starts the push grip on the table: use reach's height above it
            self.home[2] = self.table_top + REACH_HOME_HEIGHT
        self.posture_reset = True if self.cfg.posture_reset is None else self.cfg.posture_reset
        arm = [j for j in range(self.model.njnt) if self._is_arm_joint(self.model.joint(j).name)]
        self._arm_qpos = np.array([self.model.jnt_qposadr[j] for j in arm])
        self._arm_dof = np.array([self.model.jnt_dofadr[j] for j in arm])
        self._home_arm_qpos = self.data.qpos[self._arm_qpos].copy()
        self._ref_rot_t = _rotation_from_matrix(self._grip_mat()).inv()
        self.low = self.home + np.asarray(self.cfg.workspace_low)
        self.high = self.home + np.asarray(self.cfg.workspace_high)
        if self.block_half is not None:
            xy = np.asarray(self.cfg.push_workspace_xy, dtype=np.float64)
            self.low[:2], self.high[:2] = self.home[:2] - xy, self.home[:2] + xy
            if self.cfg.push_planar and self.task.kind == "push":
                self.low[2] = self.high[2] = self.table_top + self.block_half
        self._grip_cmd = self.gripper_closedness()
        self.goal: np.ndarray | None = None  # goal position (ee for reach, object for push and pick_and_place)
        self.goal_ee: np.ndarray | None = None  # end-effector position shown in the goal image
        self.push_dir: np.ndarray | None = None  # push: unit x/y direction from the block's start to its goal
        fingers = ("robot0:l_gripper_finger_joint", "robot0:r_gripper_finger_joint")
        self._finger_qpos = np.array([self.model.joint(f).qposadr[0] for f in fingers])
        self._finger_dof = np.array([self.model.joint(f).dofadr[0] for f in fingers])

    # ----------------------------------------------------------------------------------------------- scene set-up
    def _hide_markers(self) -> None:
        """Make the red target site and the green mocap crosshair invisible in camera images."""
        for i in range(self.model.nsite):
            if self.model.site(i).name.startswith("target"):
                self.model.site_rgba[i, 3] = 0.0
        mocap_bodies = {b for b in range(self.model.nbody) if self.model.body_mocapid[b] >= 0}
        for g in range(self.model.ngeom):
            if self.model.geom_bodyid[g] in mocap_bodies:
                self.model.geom_rgba[g, 3] = 0.0

    def _set_block_size(self, half: float | None) -> float:
        """Resize the push block (collision box and its bounding volumes); returns the half edge in metres."""
        gid = self.model.geom("object0").id
        if half is None:
            return float(self.model.geom_size[gid, 0])
        if not 0.01 <= half <= 0.06:
            raise SimError(f"block_half_size must be in [0.01, 0.06] m, got {half}")
        self.model.geom_size[gid] = half
        self.model.geom_rbound[gid] = half * np.sqrt(3.0)
        self.model.geom_aabb[gid] = [0.0, 0.0, 0.0, half, half, half]
        return float(half)

    def _set_block_colour(self, rgba) -> None:
        rgba = np.asarray(rgba, dtype=np.float64).reshape(-1)
        if rgba.shape != (4,) or not np.all((rgba >= 0) & (rgba <= 1)):
            raise SimError(f"block_rgba must be 4 numbers in [0, 1], got {self.cfg.block_rgba!r}")
        gid = self.model.geom("object0").id
        self.model.geom_matid[gid] = -1  # drop the textured material: the flat colour shows
        self.model.geom_rgba[gid] = rgba

    def _table_top(self) -> float:
        """Height of the table's top face (m): the top of the table body's box."""
        table = self.model.body("table0")
        gid = int(table.geomadr[0])
        return float(table.pos[2] + self.model.geom_pos[gid][2] + self.model.geom_size[gid][2])

    @staticmethod
    def _is_arm_joint(name: str) -> bool:
        return name.startswith("robot0:") and "finger" not in name

    def _grip_pos(self) -> np.ndarray:
        return self.data.site("robot0:grip").xpos.copy()

    def _grip_mat(self) -> np.ndarray:
        return self.data.site("robot0:grip").xmat.copy()

    def _physics_step(self, n: int = 1) -> None:
        for _ in range(n):
            self._mj.mj_step(self.model, self.data, nstep=self._env.n_substeps)
            self._env._step_callback()

    # ------------------------------------------------------------------------------------------------ observation
    def gripper_closedness(self) -> float:
        """0 = open, 1 = closed (DROID convention); a blocked gripper (reach, push) reads closed."""
        opening = float(self.data.joint("robot0:l_gripper_finger_joint").qpos[0])
        opening += float(self.data.joint("robot0:r_gripper_finger_joint").qpos[0])
        return float(np.clip((GRIP_OPEN_M - opening) / (GRIP_OPEN_M - GRIP_CLOSED_M), 0.0, 1.0))

    def ee_position(self) -> np.ndarray:
        return self._grip_pos()

    def orientation_quat(self) -> np.ndarray:
        """Grip orientation relative to the reference grip frame, as a quaternion (x, y, z, w)."""
        return (_rotation_from_matrix(self._grip_mat()) * self._ref_rot_t).as_quat()

    def state(self) -> np.ndarray:
        """7-D state [xyz, relative euler 'xyz', gripper closedness] as float32."""
        from scipy.spatial.transform import Rotation

        euler = Rotation.from_quat(self.orientation_quat()).as_euler("xyz")
        return np.concatenate([self._grip_pos(), euler, [self.gripper_closedness()]]).astype(np.float32)

    def block_position(self) -> np.ndarray:
        """Push, pick_and_place: the block's centre (m, world)."""
        if self.block_half is None:
            raise SimError(f"the {self.cfg.task} task has no block")
        return self.data.joint("object0:joint").qpos[:3].copy()

    def block_distance_to_goal(self) -> float:
        """Push: block centre to its goal position (metres; Fetch counts < 5 cm as success)."""
        if self.goal is None:
            raise SimError("no goal set: call reset() or set_goal() first")
        return float(np.linalg.norm(self.block_position() - self.goal))

    def render(self) -> np.ndarray:
        """RGB uint8 [H, W, 3] from the fixed third-person camera."""
        return np.ascontiguousarray(self._env.render())

    def distance_to_goal(self) -> float:
        """Reach: end effector to goal; push, pick_and_place: object to goal (metres)."""
        if self.goal is None:
            raise SimError("no goal set: call reset() or set_goal() first")
        if self.task.has_block:
            return self.block_distance_to_goal()
        return float(np.linalg.norm(self._grip_pos() - self.goal))

    # ----------------------------------------------------------------------------------------------------- control
    def step(self, action: np.ndarray) -> np.ndarray:
        """Apply one 7-D delta action (xyz clamped to ±max_step and to the workspace) and return the new state.

        The mocap is set to the absolute target and the arm settles for `physics_steps_per_action` env steps
        (`settle_steps` from the home posture with `posture_reset`), so the realised move equals the commanded one
        to ~0.3 mm (Fetch's own step lags by a third).
        """
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
            raise SimError(f"action must be 7 finite numbers [dx,dy,dz,droll,dpitch,dyaw,dgripper], got {action!r}")
        self._grip_cmd = float(np.clip(self._grip_cmd + a[6], 0.0, 1.0))
        delta = np.clip(a[:3], -self.cfg.max_step, self.cfg.max_step)
        self._move_mocap(self._grip_pos() + delta, self.cfg.physics_steps_per_action)
        return self.state()

    def step_toward(self, target_xyz: np.ndarray, gripper: float | None = None) -> np.ndarray:
        """One step toward an absolute end-effector target (used by the ROS node for `ee_target`)."""
        target = np.asarray(target_xyz, dtype=np.float64).reshape(-1)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise SimError(f"target must be 3 finite numbers, got {target_xyz!r}")
        action = np.zeros(ACTION_DIM)
        action[:3] = target - self._grip_pos()
        if gripper is not None:
            action[6] = float(np.clip(gripper, 0.0, 1.0)) - self._grip_cmd
        return self.step(action)

    def teleport(self, ee_xyz: np.ndarray) -> None:
        """Move the end effector to a point and let it settle (start states and goal images)."""
        self._move_mocap(np.asarray(ee_xyz, dtype=np.float64), self.cfg.settle_steps)

    def _home_posture(self) -> None:
        """Put the arm joints back in their home posture, at rest (the grip then sits at `home`)."""
        self.data.qpos[self._arm_qpos] = self._home_arm_qpos
        self.data.qvel[self._arm_dof] = 0.0
        self._mj.mj_forward(self.model, self.data)

    def _move_mocap(self, ee_xyz: np.ndarray, n_steps: int) -> None:
        """Place the mocap so the grip site is pulled to `ee_xyz` (clamped to the workspace), then simulate."""
        target = np.clip(ee_xyz, self.low, self.high)
        if self.posture_reset and self.block_half is None:
            self._home_posture()
            n_steps = max(n_steps, self.cfg.settle_steps)
        self._pull_grip(target, n_steps)
        if self.posture_reset and self.block_half is not None:
            self._resettle_posture(target)

    def _pull_grip(self, target: np.ndarray, n_steps: int) -> None:
        self._env._utils.reset_mocap2body_xpos(self.model, self.data)
        self.data.mocap_pos[0] += target - self._grip_pos()  # the mocap holds the gripper link, not the grip site
        if not self._env.block_gripper:
            finger = (1.0 - self._grip_cmd) * GRIP_OPEN_M / 2 + self._grip_cmd * GRIP_CLOSED_M / 2
            self.data.ctrl[:] = finger  # the two finger position actuators
        self._physics_step(n_steps)

    def _resettle_posture(self, target: np.ndarray) -> None:
        """Push: after the physical move, re-settle the arm from its home posture at the grip position it reached,
        with the block parked meanwhile and then restored (position and velocity): the same posture for the same
        grip position, without sweeping the arm through the block. Pick_and_place: at the commanded `target` when
        the grip reached it within `HOLD_SAG_M` (a held block sags the grip ~0.3 mm a step, which added up to
        centimetres while holding still; a controller holds its commanded pose), else where it stopped."""
        joint = self.data.joint("object0:joint")
        qpos, qvel = joint.qpos.copy(), joint.qvel.copy()
        fingers = self.data.qpos[self._finger_qpos].copy(), self.data.qvel[self._finger_dof].copy()
        grip = self._grip_pos()
        if not self._env.block_gripper and np.linalg.norm(grip - target) < HOLD_SAG_M:
            grip = target
        self._park_block()
        self._home_posture()
        self._pull_grip(grip, self.cfg.resettle_steps)
        joint = self.data.joint("object0:joint")
        joint.qpos[:], joint.qvel[:] = qpos, qvel
        if not self._env.block_gripper:  # pick_and_place: the fingers as they were (a held block stays held)
            self.data.qpos[self._finger_qpos], self.data.qvel[self._finger_dof] = fingers
        self._mj.mj_forward(self.model, self.data)

    # ---------------------------------------------------------------------------------------------- state, goals
    def get_snapshot(self) -> np.ndarray:
        """Full integration state (includes the mocap) for exact restore."""
        spec = self._mj.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(self._mj.mj_stateSize(self.model, spec))
        self._mj.mj_getState(self.model, self.data, buf, spec)
        return buf

    def set_snapshot(self, snapshot: np.ndarray) -> None:
        self._mj.mj_setState(self.model, self.data, np.asarray(snapshot), self._mj.mjtState.mjSTATE_INTEGRATION)
        self._mj.mj_forward(self.model, self.data)
        if not self._env.block_gripper:  # the gripper command, from the finger actuators' restored targets
            finger = float(self.data.ctrl[0])
            self._grip_cmd = float(np.clip((GRIP_OPEN_M / 2 - finger) / ((GRIP_OPEN_M - GRIP_CLOSED_M) / 2), 0, 1))

    def sample_position(self) -> np.ndarray:
        return self.home + self.rng.uniform(self.cfg.goal_low, self.cfg.goal_high)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """New episode: random start, random goal at least `min_start_goal_distance` away. Returns the state."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._env.reset(seed=int(self.rng.integers(2**31)))
        self._grip_cmd = self.gripper_closedness()
        if self.block_half is not None:
            self._reset_block()
            return self.state()
        self.teleport(self.sample_position())
        for _ in range(1000):
            goal = self.sample_position()
            if np.linalg.norm(goal - self._grip_pos()) >= self.cfg.min_start_goal_distance:
                break
        self.set_goal(goal)
        return self.state()

    def _reset_block(self) -> None:
        """Arm first (block parked off the table), then the block clear of it: the arm never sweeps into it.

        The block starts within `block_start_range` of the initial grip position, its goal `min_start_goal_distance`
        to `object_goal_range` away and inside `goal_low`..`goal_high` (x/y: well on the table), such that the pose
        behind it (pre-push) and the goal pose are in the workspace. Pick_and_place: the gripper starts open, and
        the goal is `pick_goal_height` above the block's resting height.
        """
        pick = self.task.kind == "pick_and_place"
        self._park_block()
        if pick:
            self._grip_cmd = 0.0
        self.teleport(self.sample_position())
        ee, h, r = self._grip_pos(), self.block_half, self.cfg.block_start_range
        for _ in range(1000):
            block = self.home[:2] + self.rng.uniform(-r, r, 2)
            goal = block + self.rng.uniform(-1.0, 1.0, 2) * self.cfg.object_goal_range
            offset = np.linalg.norm(goal - block)
            if offset < self.cfg.min_start_goal_distance or not self.on_table_xy(goal):
                continue
            back = (goal - block) / offset * (h + self.cfg.push_clearance)
            poses_ok = all(self._in_workspace_xy(p) for p in (block - back, goal - back))
            arm_clear = np.linalg.norm(ee[:2] - block) > h + 0.08  # not over the block: it starts in view
            if poses_ok and arm_clear:
                break
        else:
            raise SimError("could not sample a push start: the workspace is too small for the block ranges")
        self.place_block(np.r_[block, self.table_top + h])
        lift = self.rng.uniform(*self.cfg.pick_goal_height) if pick else 0.0
        self.set_goal(np.r_[goal, self.table_top + h + lift])

    def on_table_xy(self, xy: np.ndarray) -> bool:
        """Push: is x/y inside the goal range (`goal_low`..`goal_high` around home), well inside the table?"""
        rel = np.asarray(xy, dtype=np.float64)[:2] - self.home[:2]
        return bool(
            np.all(rel >= np.asarray(self.cfg.goal_low[:2])) and np.all(rel <= np.asarray(self.cfg.goal_high[:2]))
        )

    def _in_workspace_xy(self, xy: np.ndarray) -> bool:
        return bool(np.all(xy >= self.low[:2]) and np.all(xy <= self.high[:2]))

    def _park_block(self) -> None:
        """Put the block on the floor far from the table and the camera (while the arm is being placed)."""
        self.place_block(np.array([0.3, 2.5, self.block_half]))

    def place_block(self, xyz: np.ndarray) -> None:
        """Set the block's pose (upright) and stop it; no simulation step, so nothing else moves."""
        joint = self.data.joint("object0:joint")
        joint.qpos[:3], joint.qpos[3:7], joint.qvel[:] = xyz, [1.0, 0.0, 0.0, 0.0], 0.0
        self._mj.mj_forward(self.model, self.data)

    def set_goal(self, goal_xyz: np.ndarray) -> None:
        goal = np.asarray(goal_xyz, dtype=np.float64).reshape(-1)
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise SimError(f"goal must be 3 finite numbers, got {goal_xyz!r}")
        if not self.task.has_block and (np.any(goal < self.low - 1e-9) or np.any(goal > self.high + 1e-9)):
            raise SimError(f"goal {goal.round(3).tolist()} is outside the workspace {self.low.round(3)}..")
        self.goal = goal
        self._env.goal = goal.copy()
        if self.block_half is None:
            self.goal_ee = goal.copy()
            return
        if self.task.kind == "pick_and_place":  # the goal image: the block held at its goal by the closed gripper
            self.goal_ee = np.clip(goal - GRASP_OFFSET, self.low, self.high)
            return
        # push: the goal image shows the grip resting behind the block (relative to the push), clear of it
        to_goal = goal[:2] - self.block_position()[:2]
        dist = np.linalg.norm(to_goal)
        self.push_dir = to_goal / dist if dist > 1e-6 else np.array([1.0, 0.0])
        self.goal_ee = self.behind_block(goal, clearance=self.cfg.goal_clearance)

    def behind_block(self, block_xyz: np.ndarray, height: float = 0.0, clearance: float | None = None) -> np.ndarray:
        """Push: the grip position `clearance` (default `push_clearance`) behind a block at `block_xyz` along the
        push direction, `height` above the block's centre (the workspace floor keeps it above the table)."""
        clearance = self.cfg.push_clearance if clearance is None else clearance
        back = self.push_dir * (self.block_half + clearance)
        pose = np.r_[block_xyz[:2] - back, self.table_top + self.block_half + height]
        return np.clip(pose, self.low, self.high)

    def goal_state(self) -> np.ndarray:
        """The 7-D state the arm has in the goal image."""
        return self._with_goal_scene(self.state)

    def goal_image(self) -> np.ndarray:
        """Render the scene as it looks with the goal reached, then restore the current state exactly."""
        return self._with_goal_scene(self.render)

    def scene_image(
        self, ee_xyz: np.ndarray, block_xyz: np.ndarray | None = None, grasp: bool | None = None
    ) -> np.ndarray:
        """Render the scene with the grip at `ee_xyz` and (push) the block at `block_xyz` (default: where it is
        now), then restore the current state exactly: the images of goals and sub-goals. Pick_and_place: `grasp`
        True = the gripper closed on the block at `block_xyz`, False = the gripper open, the block on the table."""
        return self._with_scene(np.asarray(ee_xyz, dtype=np.float64), block_xyz, self.render, grasp=grasp)

    def subgoal_images(self, every: int = 0, max_steps: int = 40, until_m: float = 0.03) -> list[np.ndarray]:
        """Diagnostic sub-goals (the protocol is `demonstration_images`): images of the way to the goal, ending with
        the goal image; the current state is restored.

        every = 0: the grip above the pose behind the block (not for a planar pusher), lowered there (the block
        where it is now), then the goal. every > 0: frames of the scripted pusher's own rollout from here, one
        every `every` steps until the block is within 1 cm of its goal, or within `until_m` and the pusher is no
        longer pushing (at most `max_steps`), then the goal (the pusher sometimes went round the block for a last
        1-2 cm, and the goal image then pulled the arm back through the block). Reach: the goal image alone.
        Pick_and_place: every = 0: approach (the open gripper above the block), grasp (closed on it where it is),
        the goal; every > 0: frames of the scripted picker's rollout until the block is within 1 cm of its goal.
        """
        if self.block_half is None:
            return [self.goal_image()]
        if every < 0 or max_steps < 1 or not until_m > 0:
            raise SimError(f"need every >= 0, max_steps >= 1, until_m > 0, got {every}, {max_steps}, {until_m}")
        pick = self.task.kind == "pick_and_place"
        if every == 0 and pick:
            block = self.block_position()
            approach = self.scene_image(block + [0.0, 0.0, self.cfg.pick_approach_height], block, grasp=False)
            return [approach, self.scene_image(block - GRASP_OFFSET, block, grasp=True), self.goal_image()]
        if every == 0:
            block = self.block_position()
            lift = self.block_half + 0.05
            poses = [self.behind_block(block, height=lift), self.behind_block(block)]
            if self.high[2] - self.low[2] < 1e-9:  # a planar pusher: no lifted pose
                poses = poses[1:]
            return [self.scene_image(p, block) for p in poses] + [self.goal_image()]
        frames, done = self._demonstrate(max_steps, until_m)
        images = [f for t, f in enumerate(frames, 1) if t % every == 0 and not (done and t == len(frames))]
        return images + [self.goal_image()]

    def demonstration_images(self, frames: int, max_steps: int = 40, until_m: float = 0.03) -> list[np.ndarray]:
        """The demonstration protocol: `frames` (K) frames of one scripted demonstration from here (the task's
        demonstrator on true positions, run until done as in `subgoal_images`) at evenly spaced points of its
        progress (after steps round(T i / (K + 1)), i = 1..K, of its T steps), then the goal image: K + 1 images,
        the current state restored. K = 0: the goal image alone."""
        if frames < 0:
            raise SimError(f"need frames >= 0 demonstration frames, got {frames}")
        if frames == 0:
            return [self.goal_image()]
        rollout, _ = self._demonstrate(max_steps, until_m)
        rollout = rollout or [self.render()]  # already there: the current image
        steps = len(rollout)
        picks = [min(steps, max(1, round(steps * i / (frames + 1)))) for i in range(1, frames + 1)]
        return [rollout[t - 1] for t in picks] + [self.goal_image()]

    def _demonstrate(self, max_steps: int, until_m: float) -> tuple[list[np.ndarray], bool]:
        """Frames of the task's scripted demonstrator from the current state, one per step, until the distance to
        the goal is under 1 cm (done), or (push) under `until_m` with the pusher no longer pushing (at 1 cm it
        sometimes went round the block for the last 1-2 cm, and the goal image then pulled the arm back through the
        block), or `max_steps`; the state is restored. Returns the frames and whether it was done."""
        if max_steps < 1 or not until_m > 0:
            raise SimError(f"need max_steps >= 1, until_m > 0, got {max_steps}, {until_m}")
        snap, images, done = self.get_snapshot(), [], False
        try:
            for _ in range(max_steps):
                if self.task.kind == "push" and self.block_distance_to_goal() < until_m and not is_pushing(self):
                    break
                self.step(self.task.demonstrator(self))
                images.append(self.render())
                done = self.distance_to_goal() < 0.01
                if done:
                    break
        finally:
            self.set_snapshot(snap)
        return images, done

    def _with_goal_scene(self, fn):
        if self.goal is None:
            raise SimError("no goal set: call reset() or set_goal() first")
        grasp = True if self.task.kind == "pick_and_place" else None
        return self._with_scene(self.goal_ee, self.goal, fn, grasp=grasp)

    def _with_scene(self, ee_xyz: np.ndarray, block_xyz: np.ndarray | None, fn, grasp: bool | None = None):
        """Set the scene, call fn, restore. The arm is settled first from its home posture (so the image does
        not depend on the path) with the block out of its way; the block is set after it, so it is not pushed.
        grasp (pick_and_place): True = the fingers closed to the block's width and the block between them at
        `block_xyz`; False = the gripper open and the block on the table; None = the gripper as it is."""
        snap, grip_cmd = self.get_snapshot(), self._grip_cmd
        try:
            if self.block_half is not None:
                block = self.block_position() if block_xyz is None else np.asarray(block_xyz, dtype=np.float64)
                self._park_block()
            if grasp is not None:
                self._grip_cmd = 1.0 if grasp else 0.0
            if not self.posture_reset:
                self._home_posture()
            self.teleport(ee_xyz)
            if self.block_half is not None:
                z = block[2] if grasp else self.table_top + self.block_half
                self.place_block(np.r_[block[:2], z])
            if grasp:
                self.data.qpos[self._finger_qpos] = GRASP_FINGER_GAP + self.block_half  # each finger on a face
                self.data.qvel[self._finger_dof] = 0.0
                self._mj.mj_forward(self.model, self.data)
            return fn()
        finally:
            self.set_snapshot(snap)
            self._grip_cmd = grip_cmd

    def close(self) -> None:
        self._env.close()


def scripted_reach_action(sim: FetchSim) -> np.ndarray:
    """The scripted reacher (an oracle on the true goal): straight at the goal pose, each coordinate clipped to the
    per-step limit (what CEM's box allows). Returns a 7-D action."""
    if sim.goal_ee is None:
        raise SimError("the scripted reacher needs a goal: call reset() first")
    action = np.zeros(ACTION_DIM)
    action[:3] = np.clip(sim.goal_ee - sim.ee_position(), -sim.cfg.max_step, sim.cfg.max_step)
    return action


def scripted_push_action(sim: FetchSim, target_xy: np.ndarray | None = None) -> np.ndarray:
    """The scripted pusher (an oracle on true positions): get behind the block relative to its target (default:
    its goal), going over it (or, for a planar pusher, around it) when the block is in the way, lower the grip to
    the block's centre height, then push toward the target, steering the grip back onto the block-target line.
    Returns a 7-D action."""
    if sim.block_half is None or sim.goal is None:
        raise SimError("the scripted pusher needs the push task after reset()")
    h, step, action = sim.block_half, sim.cfg.max_step, np.zeros(ACTION_DIM)
    ee, block = sim.ee_position(), sim.block_position()
    to_goal = (sim.goal[:2] if target_xy is None else np.asarray(target_xy, dtype=np.float64)[:2]) - block[:2]
    dist = float(np.linalg.norm(to_goal))
    if dist < 0.005:
        return action
    d = to_goal / dist
    rel = ee[:2] - block[:2]
    along, perp = float(rel @ d), rel - float(rel @ d) * d
    push_z, safe_z = max(sim.table_top + h, sim.low[2]), sim.table_top + 2 * h + 0.04
    back = h + sim.cfg.push_clearance
    behind = block[:2] - d * back
    if _in_push_pose(sim, along, perp, push_z):
        action[:2] = d * min(step, dist) - perp  # push, correcting the sideways offset
        action[2] = push_z - ee[2]
    else:
        gap = behind - ee[:2]
        seg = np.clip(((block[:2] - ee[:2]) @ gap) / max(float(gap @ gap), 1e-9), 0.0, 1.0)
        blocked = np.linalg.norm(gap) > 0.01 and np.linalg.norm(ee[:2] + seg * gap - block[:2]) < h + 0.06
        if blocked and sim.high[2] < safe_z - 0.01:  # a planar pusher cannot rise: around the block
            action[:2] = _around_block(sim, block[:2], d, rel, along, perp) - ee[:2]
        elif ee[2] < safe_z - 0.01 and blocked:
            action[2] = safe_z - ee[2]  # rise first: the way behind the block passes over it
            if np.linalg.norm(rel) > h + 0.06:
                action[:2] = gap
        elif np.linalg.norm(gap) > 0.01:
            action[:2] = gap
        else:
            action[2] = push_z - ee[2]  # behind the block: lower the grip
    action[:3] = np.clip(action[:3], -step, step)
    return action


def is_pushing(sim: FetchSim) -> bool:
    """Is the grip in the scripted pusher's push pose (low, behind the block, on the block-goal line)?"""
    block = sim.block_position()
    to_goal = sim.goal[:2] - block[:2]
    d = to_goal / max(float(np.linalg.norm(to_goal)), 1e-9)
    rel = sim.ee_position()[:2] - block[:2]
    along = float(rel @ d)
    return _in_push_pose(sim, along, rel - along * d, max(sim.table_top + sim.block_half, sim.low[2]))


def _in_push_pose(sim: FetchSim, along: float, perp: np.ndarray, push_z: float) -> bool:
    back = sim.block_half + sim.cfg.push_clearance
    low = sim.ee_position()[2] < push_z + 0.02
    return bool(low and -(back + 0.03) < along < -sim.block_half and np.linalg.norm(perp) < 0.015)


def _around_block(sim: FetchSim, block: np.ndarray, d: np.ndarray, rel, along: float, perp) -> np.ndarray:
    """The next x/y waypoint of a planar way around the block to the pose behind it: out to the side, along
    the side to the back corner, then in. The side is the one the grip is on (or, in line, the one in the
    workspace)."""
    h, back, side_r = sim.block_half, sim.block_half + sim.cfg.push_clearance, sim.block_half + 0.06
    p = float(np.linalg.norm(perp))
    if p > 1e-3:
        n = perp / p
    else:
        n = np.array([-d[1], d[0]])
        if not sim._in_workspace_xy(block + n * side_r - d * back):
            n = -n
    if along <= -h:  # already behind the block's back face: straight in
        return block - d * back
    if p < side_r - 0.005:  # beside or in front of the block: out to the side first
        return block + d * along + n * side_r
    return block - d * back + n * side_r  # along the side to the back corner


def is_holding(sim: FetchSim) -> bool:
    """Pick_and_place: is the gripper commanded closed with the block between its fingers (the fingers stopped
    on the block, the block centred at the grip site within a half edge)?"""
    h = sim.block_half
    opening = float(sim.data.qpos[sim._finger_qpos].sum())
    near = np.linalg.norm(sim.block_position() - sim.ee_position()) < h
    return bool(sim._grip_cmd > 0.5 and opening > h and near)


def scripted_pick_action(sim: FetchSim, target_xyz: np.ndarray | None = None) -> np.ndarray:
    """The scripted picker (an oracle on true positions): with the gripper open, go above the block (rising first
    when low beside it), descend to its centre, close; holding it, carry it to the target (default: its goal),
    lifted clear of the table on the way; closed without the block, open. Returns a 7-D action (dgripper +1 closes).
    """
    if sim.task.kind != "pick_and_place" or sim.goal is None:
        raise SimError("the scripted picker needs the pick_and_place task after reset()")
    h, step, action = sim.block_half, sim.cfg.max_step, np.zeros(ACTION_DIM)
    ee, block = sim.ee_position(), sim.block_position()
    target = sim.goal if target_xyz is None else np.asarray(target_xyz, dtype=np.float64)
    if is_holding(sim):
        delta = target - block
        carry_z = sim.table_top + h + 0.04  # lift before carrying, so the block does not drag on the table
        if np.linalg.norm(delta[:2]) > 0.02 and block[2] < carry_z - 0.005:
            delta = np.r_[0.0, 0.0, carry_z - block[2]]
        action[:3] = delta
    elif sim._grip_cmd > 0.5:
        action[6] = -1.0  # closed on nothing: open
    else:
        rel = block - ee
        above = block + [0.0, 0.0, sim.cfg.pick_approach_height]
        off, low = float(np.linalg.norm(rel[:2])), ee[2] < block[2] + h + 0.02
        if off > 0.008:
            if low and off < 0.015:
                action[:2] = rel[:2]  # low and nearly centred (a noisy descent): centre in place
            elif low and off < h + 0.06:
                action[2] = above[2] - ee[2]  # low beside the block: rise first
            else:
                action[:3] = above - ee
        elif ee[2] - block[2] > 0.005:
            action[2] = block[2] - ee[2]  # above the block: descend to its centre
        else:
            action[6] = 1.0  # around the block: close
    action[:3] = np.clip(action[:3], -step, step)
    return action

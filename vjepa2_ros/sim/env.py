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
from dataclasses import dataclass, field

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is imported

TASKS = {"reach": "FetchReach-v4", "push": "FetchPush-v4"}
FETCH_STEP_M = 0.05  # Fetch's own largest move per step; ours by default
GRIP_OPEN_M, GRIP_CLOSED_M = 0.100, 0.003  # finger-joint sum when fully open / closed
STATE_DIM = ACTION_DIM = 7


class SimError(RuntimeError):
    """Raised on a bad request to the simulator (unknown task, malformed action, unreachable target)."""


@dataclass
class SimConfig:
    """Camera, workspace and goal ranges. Offsets are relative to the initial grip position (≈1.34, 0.75, 0.53)."""

    task: str = "reach"
    image_size: int = 64
    # Steep view from the side opposite the robot's reach: a 3 cm move in any direction changes the 64 px image
    # (the view ray is nearly vertical, and lowering the grip bends the arm visibly); the old oblique view
    # (azimuth 160, elevation -30) hid moves along its ray (see the model card).
    camera: dict = field(
        default_factory=lambda: {"lookat": [1.26, 0.75, 0.52], "distance": 1.3, "azimuth": 270.0, "elevation": -75.0}
    )
    # True: every move re-settles the arm from its home posture, so a grip position always shows the same arm
    # posture (what a Cartesian controller with a nullspace posture task does). False: the redundant joints drift
    # with the path, and the goal image cannot be matched exactly. None = True for reach, False for push (the
    # re-settling sweep would hit the object).
    posture_reset: bool | None = None
    max_step: float = FETCH_STEP_M  # largest end-effector move per step (m)
    workspace_low: tuple[float, float, float] = (-0.22, -0.28, -0.11)  # z floor ≈ 0.425 m, just above the table
    workspace_high: tuple[float, float, float] = (0.22, 0.28, 0.22)
    goal_low: tuple[float, float, float] = (-0.15, -0.15, -0.08)
    goal_high: tuple[float, float, float] = (0.15, 0.15, 0.12)
    min_start_goal_distance: float = 0.06  # random starts are at least this far from the goal (m)
    physics_steps_per_action: int = 4  # env steps (0.04 s each) per action: the arm settles within ~0.3 mm
    settle_steps: int = 30  # env steps to settle after teleporting the mocap (lands within ~0.2 mm)
    object_goal_range: float = 0.12  # push: object goal offset range in x/y (m)


def _rotation_from_matrix(mat: np.ndarray):
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(mat, dtype=np.float64).reshape(3, 3))


class FetchSim:
    """One Fetch scene: reset to random starts, 7-D delta actions, renders, goal states and goal images."""

    def __init__(self, config: SimConfig | None = None, seed: int | None = None):
        self.cfg = config or SimConfig()
        if self.cfg.task not in TASKS:
            raise SimError(f"unknown task {self.cfg.task!r}; choose one of {sorted(TASKS)}")
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
        cam = dict(self.cfg.camera)
        cam["lookat"] = np.asarray(cam["lookat"], dtype=np.float64)
        size = self.cfg.image_size
        self._env = gym.make(
            TASKS[self.cfg.task], render_mode="rgb_array", width=size, height=size, default_camera_config=cam
        ).unwrapped
        self.model, self.data = self._env.model, self._env.data
        self._hide_markers()
        self.rng = np.random.default_rng(seed)
        self._env.reset(seed=int(self.rng.integers(2**31)))
        self.home = self._grip_pos().copy()
        self.posture_reset = self.cfg.task == "reach" if self.cfg.posture_reset is None else self.cfg.posture_reset
        arm = [j for j in range(self.model.njnt) if self._is_arm_joint(self.model.joint(j).name)]
        self._arm_qpos = np.array([self.model.jnt_qposadr[j] for j in arm])
        self._arm_dof = np.array([self.model.jnt_dofadr[j] for j in arm])
        self._home_arm_qpos = self.data.qpos[self._arm_qpos].copy()
        self._ref_rot_t = _rotation_from_matrix(self._grip_mat()).inv()
        self.low = self.home + np.asarray(self.cfg.workspace_low)
        self.high = self.home + np.asarray(self.cfg.workspace_high)
        self._grip_cmd = self.gripper_closedness()
        self.goal: np.ndarray | None = None  # goal position (ee for reach, object for push)
        self.goal_ee: np.ndarray | None = None  # end-effector position shown in the goal image

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

    def object_position(self) -> np.ndarray | None:
        if self.cfg.task == "reach":
            return None
        return self.data.joint("object0:joint").qpos[:3].copy()

    def render(self) -> np.ndarray:
        """RGB uint8 [H, W, 3] from the fixed third-person camera."""
        return np.ascontiguousarray(self._env.render())

    def distance_to_goal(self) -> float:
        """Reach: end effector to goal; push: object to goal (metres)."""
        if self.goal is None:
            raise SimError("no goal set: call reset() or set_goal() first")
        pos = self._grip_pos() if self.cfg.task == "reach" else self.object_position()
        return float(np.linalg.norm(pos - self.goal))

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

    def _move_mocap(self, ee_xyz: np.ndarray, n_steps: int) -> None:
        """Place the mocap so the grip site is pulled to `ee_xyz` (clamped to the workspace), then simulate."""
        target = np.clip(ee_xyz, self.low, self.high)
        if self.posture_reset:
            self.data.qpos[self._arm_qpos] = self._home_arm_qpos
            self.data.qvel[self._arm_dof] = 0.0
            self._mj.mj_forward(self.model, self.data)
            n_steps = max(n_steps, self.cfg.settle_steps)
        self._env._utils.reset_mocap2body_xpos(self.model, self.data)
        self.data.mocap_pos[0] += target - self._grip_pos()  # the mocap holds the gripper link, not the grip site
        if not self._env.block_gripper:
            finger = (1.0 - self._grip_cmd) * GRIP_OPEN_M / 2 + self._grip_cmd * GRIP_CLOSED_M / 2
            self.data.ctrl[:] = finger  # the two finger position actuators
        self._physics_step(n_steps)

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

    def sample_position(self) -> np.ndarray:
        return self.home + self.rng.uniform(self.cfg.goal_low, self.cfg.goal_high)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """New episode: random start, random goal at least `min_start_goal_distance` away. Returns the state."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._env.reset(seed=int(self.rng.integers(2**31)))
        self._grip_cmd = self.gripper_closedness()
        self.teleport(self.sample_position())
        if self.cfg.task == "reach":
            for _ in range(1000):
                goal = self.sample_position()
                if np.linalg.norm(goal - self._grip_pos()) >= self.cfg.min_start_goal_distance:
                    break
            self.set_goal(goal)
        else:
            obj = self.object_position()
            for _ in range(1000):
                goal = obj + np.r_[self.rng.uniform(-1, 1, 2) * self.cfg.object_goal_range, 0.0]
                if np.linalg.norm(goal - obj) >= self.cfg.min_start_goal_distance:
                    break
            self.set_goal(goal)
        return self.state()

    def set_goal(self, goal_xyz: np.ndarray) -> None:
        goal = np.asarray(goal_xyz, dtype=np.float64).reshape(-1)
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise SimError(f"goal must be 3 finite numbers, got {goal_xyz!r}")
        if self.cfg.task == "reach" and (np.any(goal < self.low - 1e-9) or np.any(goal > self.high + 1e-9)):
            raise SimError(f"goal {goal.round(3).tolist()} is outside the workspace {self.low.round(3)}..")
        self.goal = goal
        self._env.goal = goal.copy()
        # push: the goal image shows the gripper resting just behind the pushed object
        self.goal_ee = goal.copy() if self.cfg.task == "reach" else goal + np.array([0.0, 0.0, 0.05])

    def goal_state(self) -> np.ndarray:
        """The 7-D state the arm has in the goal image."""
        return self._with_goal_scene(self.state)

    def goal_image(self) -> np.ndarray:
        """Render the scene as it looks with the goal reached, then restore the current state exactly."""
        return self._with_goal_scene(self.render)

    def _with_goal_scene(self, fn):
        if self.goal is None:
            raise SimError("no goal set: call reset() or set_goal() first")
        snap = self.get_snapshot()
        try:
            if self.cfg.task == "push":
                qpos = self.data.joint("object0:joint").qpos
                qpos[:2] = self.goal[:2]
                self._mj.mj_forward(self.model, self.data)
            self.teleport(self.goal_ee)
            return fn()
        finally:
            self.set_snapshot(snap)

    def close(self) -> None:
        self._env.close()

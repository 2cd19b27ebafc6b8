"""`vjepa2-goal`: give a running planner its goal image on a real arm.

    vjepa2-goal capture --out goal.png [--node /vjepa2_planner | --topic /camera/image_raw] [--timeout S]
    vjepa2-goal send --goal goal.png [--subgoals a.png b.png ...] [--max-steps N] [--budget samples,iterations,horizon]
    vjepa2-goal send --goal goal.png --plan-only

`capture` saves the frame the planner plans from (its ~/camera_frame: the camera image as the node decoded it), or
with `--topic` a frame of that camera topic decoded by the same code (raw or compressed). `send` sends ReachGoal and
prints a line per step; Ctrl-C cancels the goal and waits for the node to confirm. `--plan-only` plans once
(~/plan_to_goal) and prints the plan without moving the arm. Exit status: 0 saved / reached / planned, 1 no frame /
stopped, aborted, canceled / plan refused, 2 bad arguments or no planner node.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import numpy as np

from vjepa2_core.data.images import ImageDecodeError, read_image_file, write_png

OK, STOPPED, USAGE = 0, 1, 2
STALE_FRAME_S = 2.0  # a captured frame older than this gets a warning (is the camera still publishing?)


class NoFrame(RuntimeError):
    """No camera frame arrived in time."""


class NotACamera(ValueError):
    """The --topic given carries no camera images (a usage error)."""


def parse_budget(text: str) -> dict[str, int]:
    """'samples,iterations,horizon' (0 or empty = the node's value) -> {'samples': ..., ...}."""
    from vjepa2_ros.goal_client import BUDGET_FIELDS

    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(BUDGET_FIELDS):
        raise argparse.ArgumentTypeError(
            f"--budget takes {','.join(BUDGET_FIELDS)} (0 = the node's value), got {text!r}"
        )
    try:
        values = [int(p or 0) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budget values must be integers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"--budget values must be >= 0, got {text!r}")
    return dict(zip(BUDGET_FIELDS, values))


def build_parser() -> argparse.ArgumentParser:
    from vjepa2_ros.goal_client import PLANNER

    p = argparse.ArgumentParser(prog="vjepa2-goal", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="save the camera frame the planner sees now as a goal image")
    cap.add_argument("--out", required=True, help="PNG file to write")
    source = cap.add_mutually_exclusive_group()
    source.add_argument("--node", default=PLANNER, help="planner node whose current frame to save (default)")
    source.add_argument("--topic", help="take the frame from this camera topic instead (Image or CompressedImage)")
    cap.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the node or a frame")
    cap.add_argument(
        "--encoder-view",
        action="store_true",
        help="save what the node's encoder sees instead: the centre square crop at its input size (to look at; "
        "send the full frame as the goal)",
    )
    snd = sub.add_parser("send", help="send a goal image (and sub-goal images) to the planner")
    snd.add_argument("--goal", required=True, help="goal image (PNG or JPEG)")
    snd.add_argument("--subgoals", nargs="+", default=[], metavar="IMAGE", help="sub-goal images, in order")
    snd.add_argument("--node", default=PLANNER, help="planner node")
    snd.add_argument("--max-steps", type=int, default=0, help="closed-loop steps at most (0: the node's max_steps)")
    snd.add_argument("--energy-threshold", type=float, default=0.0, help="reached at this energy (0: node default)")
    snd.add_argument("--budget", type=parse_budget, help="samples,iterations,horizon for this goal (0: node value)")
    snd.add_argument("--plan-only", action="store_true", help="plan once and print the plan; the arm does not move")
    snd.add_argument("--seed", type=int, default=0, help="--plan-only: search seed (0: random)")
    snd.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the planner node to appear")
    return p


# -- capture


def capture_from_node(client, timeout: float, encoder_view: bool = False) -> tuple[np.ndarray, str]:
    """The node's latest frame (retried until it has one or `timeout` passes), or `encoder_view` what its encoder
    sees of it, and a line describing it."""
    from vjepa2_ros.conversions import image_to_rgb

    end = time.monotonic() + timeout
    while True:
        response = client.camera_frame(max(0.1, end - time.monotonic()))
        if response.success:
            break
        if time.monotonic() >= end:
            raise NoFrame(f"{client.planner} has no camera frame after {timeout:g} s: {response.message}")
        time.sleep(0.2)  # the node is up but has not received a camera frame yet
    rgb = image_to_rgb(response.image)
    what = f"the frame {client.planner} plans from ({response.age:.2f} s old)"
    crop = response.crop_size
    if encoder_view:
        if not crop:
            raise NoFrame(f"{client.planner} has no model loaded (configure it) to tell its encoder's input size")
        from vjepa2_core.data.transforms import encoder_view as view

        rgb, what = view(rgb, crop), f"what the encoder of {client.planner} sees of {what[4:]}"
    elif crop:
        what += f"; its encoder sees the centre square crop resized to {crop}x{crop}"
    if response.age > STALE_FRAME_S:
        print(f"vjepa2-goal: warning: the frame is {response.age:.1f} s old (is the camera publishing?)", flush=True)
    return rgb, what


def capture_from_topic(node, topic: str, timeout: float) -> tuple[np.ndarray, str]:
    """The next frame on `topic`, decoded as the planner decodes its camera (the type is read from the graph)."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    from vjepa2_ros import conversions as conv
    from vjepa2_ros.goal_client import GoalError, spin_wait

    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
    topic = node.resolve_topic_name(topic)  # the graph lists full names
    wait, found = spin_wait(node), {}

    def published() -> bool:
        found.update(dict(node.get_topic_names_and_types()))
        return topic in found

    try:
        wait(published, timeout, f"a publisher on {topic}")
    except GoalError:
        raise NoFrame(f"nothing is published on {topic} (no publisher within {timeout:g} s)") from None
    usable = [t for t in found[topic] if t in types]
    if not usable:
        raise NotACamera(f"{topic} carries {', '.join(found[topic])}, not sensor_msgs/Image or CompressedImage")
    msg_type, frames = types[usable[0]], []
    node.create_subscription(msg_type, topic, frames.append, qos_profile_sensor_data)
    try:
        wait(lambda: bool(frames), timeout, f"a frame on {topic}")
    except GoalError:
        raise NoFrame(f"no frame arrived on {topic} within {timeout:g} s") from None
    decode = conv.image_to_rgb if msg_type is Image else conv.compressed_to_rgb
    return decode(frames[0]), f"a {usable[0].rsplit('/', 1)[-1]} frame of {topic}"


def run_capture(args: argparse.Namespace, node) -> int:
    from vjepa2_ros.goal_client import GoalClient

    if args.topic:
        rgb, what = capture_from_topic(node, args.topic, args.timeout)
    else:
        rgb, what = capture_from_node(GoalClient(node, args.node), args.timeout, args.encoder_view)
    path = write_png(args.out, rgb)
    print(f"saved {path} ({rgb.shape[1]}x{rgb.shape[0]}): {what}", flush=True)
    return OK


# -- send


def feedback_line(fb, n_goals: int) -> str:
    """One ReachGoal feedback as a line: step, energy, sub-goal, the command sent (or why none was)."""
    stage = f"  goal {fb.subgoal + 1}/{n_goals}" if n_goals > 1 else ""
    head = f"step {fb.step:3d}{stage}  energy {fb.energy:.4f}"
    if not fb.action:
        return f"{head}  no command: {fb.status or 'stopped'}"
    a = list(fb.action)
    command = f"dxyz {a[0]:+.4f} {a[1]:+.4f} {a[2]:+.4f}  drpy {a[3]:+.4f} {a[4]:+.4f} {a[5]:+.4f}  grip {a[6]:+.3f}"
    return f"{head}  command {command}" + (f"  ({fb.status})" if fb.status else "")


def run_plan_only(args: argparse.Namespace, client, goal_msg) -> int:
    from vjepa2_interfaces.srv import PlanToGoal

    budget = args.budget or {}
    request = PlanToGoal.Request(goal_image=goal_msg, seed=args.seed, **budget)
    response = client.plan(request, args.timeout)
    if not response.success:
        print(f"plan refused: {response.message}", flush=True)
        return STOPPED
    actions = np.asarray(response.actions, np.float64).reshape(response.horizon, 7)
    print(f"{response.message}: predicted energy {response.energy:.4f} (the arm did not move)")
    first = " ".join(f"{v:+.4f}" for v in actions[0])
    print(f"first action (dx dy dz droll dpitch dyaw dgripper): {first}")
    for i, row in enumerate(actions[1:], start=2):
        print(f"  step {i} {' '.join(f'{v:+.4f}' for v in row)}")
    sys.stdout.flush()
    return OK


def run_reach(args: argparse.Namespace, client, goal) -> int:
    n_goals = len(goal.subgoal_images) + 1
    interrupted = threading.Event()

    def on_signal(signum, _frame) -> None:
        if not interrupted.is_set():
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            print(f"{name}: cancelling the goal (Ctrl-C again to quit without waiting)", flush=True)
        interrupted.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = client.set_budget(args.budget, 30.0) if args.budget else None
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)  # a supervisor's stop cancels the goal too
    try:
        print(f"sent the goal to {client.planner} ({n_goals - 1} sub-goals); Ctrl-C cancels", flush=True)
        outcome = client.reach(
            goal, lambda msg: print(feedback_line(msg.feedback, n_goals), flush=True), interrupted=interrupted.is_set
        )
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if previous is not None:
            client.restore_budget(previous, 30.0)
    r = outcome.result
    confirmed = " (cancel confirmed by the planner)" if outcome.cancel_requested else ""
    print(f"{outcome.status}{confirmed}: {r.message}; {r.steps} steps, final energy {r.final_energy:.4f}", flush=True)
    return OK if outcome.reached else STOPPED


def read_goal_images(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list:
    """Goal and sub-goal files -> Image messages (sub-goals first); a bad file is a usage error, before any ROS."""
    from vjepa2_ros.conversions import rgb_to_image

    messages = []
    for path in [*args.subgoals, args.goal]:
        try:
            messages.append(rgb_to_image(read_image_file(path), "rgb8"))
        except ImageDecodeError as exc:
            parser.error(str(exc))
    return messages


def run_send(args: argparse.Namespace, node, images: list) -> int:
    from vjepa2_interfaces.action import ReachGoal
    from vjepa2_ros.goal_client import GoalClient

    client = GoalClient(node, args.node)
    *subgoals, goal_msg = images
    if args.plan_only:
        return run_plan_only(args, client, goal_msg)
    client.wait_for_planner(args.timeout)
    goal = ReachGoal.Goal(goal_image=goal_msg, subgoal_images=subgoals)
    goal.max_steps, goal.energy_threshold = args.max_steps, args.energy_threshold
    return run_reach(args, client, goal)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "send" and args.max_steps < 0:
        parser.error("--max-steps must be >= 0")
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    if args.command == "capture" and args.topic and args.encoder_view:
        parser.error("--encoder-view needs the node (its encoder's input size), not --topic")
    images = read_goal_images(parser, args) if args.command == "send" else []
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from vjepa2_ros.goal_client import GoalError, NoPlanner

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C is ours: cancel the goal, then exit
    node = rclpy.create_node(f"vjepa2_goal_{os.getpid()}")
    try:
        return run_capture(args, node) if args.command == "capture" else run_send(args, node, images)
    except (NoPlanner, NotACamera) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr, flush=True)
        return USAGE
    except (GoalError, NoFrame, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr, flush=True)
        return STOPPED
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr, flush=True)
        return STOPPED
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())

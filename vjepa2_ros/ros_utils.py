"""Small rclpy helpers for the planner node: typed parameters, a steady executor, a background plan worker,
callbacks guarded against exceptions, diagnostics, debug view."""

from __future__ import annotations

import array
import functools
import math
import queue
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)
from rclpy.node import Node


class ParameterError(ValueError):
    """A node parameter has the wrong type or an invalid value (reported at start-up, the node does not start)."""


@dataclass(frozen=True)
class Param:
    """One declared parameter: default (its type is the expected type) and a description shown by `ros2 param`.

    `live` parameters may be set at run time (`ros2 param set`; the node validates each change), the others are
    read-only; `limits` is the (from, to) range `ros2 param describe` shows and rclpy enforces.
    """

    default: Any
    description: str
    live: bool = False
    limits: tuple[float, float] | None = None

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(description=self.description, read_only=not self.live, dynamic_typing=True)
        if self.limits is not None:
            lo, hi = self.limits
            if isinstance(self.default, int) and not isinstance(self.default, bool):
                desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
            else:
                desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        return desc


def coerce(name: str, value: Any, default: Any) -> Any:
    """Accept what YAML naturally gives (an int where a float is expected); reject everything else clearly."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list):
        if isinstance(value, (list, tuple, array.array)) and all(  # rclpy gives double arrays as array('d')
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            return [float(v) for v in value]
    raise ParameterError(
        f"parameter '{name}' must be of type {type(default).__name__} (like {default!r}), got {value!r}"
    )


def check_range(name: str, value: Any, limits: tuple[float, float] | None) -> None:
    """Raise ParameterError when a number is outside `limits`, whatever its wire type: rclpy checks a declared
    range only for a value of the declared type, so an integer sent for a double parameter (`ros2 param set ...
    control_rate 1000`) would pass unchecked."""
    if limits is None or isinstance(value, (bool, str, list, tuple, array.array)):
        return
    lo, hi = limits
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ParameterError(f"parameter '{name}'={value!r} is outside its range [{lo:g}, {hi:g}]")


_STANDARD = {"use_sim_time", "start_type_description_service", "start_parameter_services"}


def declare_parameters(node: Node, spec: Mapping[str, Param]) -> dict[str, Any]:
    """Declare every parameter (read-only, typed by hand so YAML ints work for floats) and return their values."""
    values = {}
    for name, p in spec.items():
        try:
            value = node.declare_parameter(name, p.default, p.descriptor()).value
        except InvalidParameterValueException:  # outside the declared range (rclpy checks it on declaration)
            given = getattr(node, "_parameter_overrides", {}).get(name)
            shown = given.value if given is not None else p.default
            raise ParameterError(f"parameter {name}={shown!r} is outside its range {list(p.limits or ())}") from None
        values[name] = p.default if value is None else coerce(name, value, p.default)
        check_range(name, values[name], p.limits)
    given = getattr(node, "_parameter_overrides", {})  # what --params-file / -p set for this node
    unknown = sorted(k for k in given if k not in spec and k not in _STANDARD and not k.startswith("qos_overrides."))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; known: {sorted(spec)}")
    return values


class SteadyExecutor(MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor without its spin storm (rclpy 9.1, ros2/rclpy#1452; fixed upstream by #1547).

    The stock executor re-yields a callback task that sits in its thread pool's queue on every wake-up of its wait
    loop and queues it again, so on a busy node its spin thread keeps the GIL and piles up thousands of pending
    futures (300-4700 measured), while the workers that would run the task cannot get the GIL: in the planner node,
    pose callbacks (30 Hz) stalled for 0.4-2.7 s at a time on an idle 2-core machine and goals stopped on
    `stale_state`. Here a task is queued once; when the wait loop offers it again before a worker has started it,
    the spin thread waits (GIL released) until some queued task starts, at most `QUEUED_WAIT` s.
    """

    QUEUED_WAIT = 0.005  # s the spin thread waits for a queued task to start before it looks again

    def __init__(self, num_threads: int | None = None, *, context=None) -> None:
        super().__init__(num_threads, context=context)
        self._queued: set = set()  # tasks in the pool's queue that no worker has started yet
        self._started = threading.Condition()

    def _spin_once_impl(self, timeout_sec=None, wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        with self._started:
            if handler in self._queued:
                self._started.wait(self.QUEUED_WAIT)
                return
            self._queued.add(handler)
        self._executor.submit(self._run_task, handler)
        if handler not in self._futures:
            self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # a callback's exception surfaces in spin(), as with the stock executor

    def _run_task(self, handler) -> None:
        with self._started:
            self._queued.discard(handler)
            self._started.notify_all()
        handler()


class PlanWorker:
    """Runs submitted jobs one at a time on a daemon thread, so executor threads stay free and exit never waits.

    A job submitted with `stop=threading.Event()` is cancellable: it is skipped if the event is set before it
    starts, and it is called with `should_stop=stop.is_set` (the planners poll it once per CEM iteration and raise
    `PlanCancelled`), so a caller that gives up on a plan (deadline, goal cancel, shutdown) frees the worker
    within one iteration instead of leaving it busy with work nobody waits for.
    """

    def __init__(self, name: str = "plan-worker") -> None:
        self._jobs: queue.Queue = queue.Queue()
        self.busy = False  # a job is running (reported in diagnostics)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any, stop: threading.Event | None = None, **kwargs: Any) -> Future:
        """Queue `fn(*args, **kwargs)`; with `stop`, also `should_stop=stop.is_set` (set `stop` to abandon it)."""
        future: Future = Future()
        if stop is not None:
            kwargs["should_stop"] = stop.is_set
        self._jobs.put((future, fn, args, kwargs, stop))
        return future

    def close(self, timeout: float) -> bool:
        """Stop taking jobs and wait up to `timeout` s for the running one; False if it is still running."""
        self._jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args, kwargs, stop = job
            if (stop is not None and stop.is_set() and future.cancel()) or not future.set_running_or_notify_cancel():
                continue
            self.busy = True
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
            finally:
                self.busy = False


def guarded(fallback):
    """Decorate a callback so that no exception ends the node: it is logged and counted (`callback_errors` in the
    node's `_counts`, under its `_lock`), and `fallback(self, exc, *args)` gives the callback's answer (a failed
    service response, an aborted goal result, or None)."""

    def wrap(method):
        @functools.wraps(method)
        def run(self, *args):
            try:
                return method(self, *args)
            except Exception as exc:  # noqa: BLE001 - any escaping exception would end the executor's spin
                with self._lock:
                    self._counts["callback_errors"] += 1
                self.get_logger().error(f"{method.__name__} failed: {type(exc).__name__}: {exc}")
                return fallback(self, exc, *args)

        return run

    return wrap


def _failed_response(_node, exc, _req, resp):
    resp.success, resp.message = False, f"internal error: {type(exc).__name__}: {exc}"
    return resp


def _nothing(*_args):
    return None


def diagnostics(
    name: str, hardware_id: str, level: bytes, message: str, values: Mapping[str, Any], stamp
) -> DiagnosticArray:
    """One DiagnosticStatus in a DiagnosticArray, values stringified."""
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg


def debug_view(
    current: np.ndarray, goal: np.ndarray | None, text: str, height: int = 240, max_aspect: float = 4.0
) -> np.ndarray:
    """current | goal side by side at `height` pixels with a text banner: what the planner sees and aims for.

    Each panel fits a `height` x `max_aspect * height` box (a 1 x 16384 frame would otherwise become a
    240 x 3.9 M image, 2.6 GiB), so the view is at most 2 panels of that box whatever the input's shape.
    """
    max_width = max(1, round(max_aspect * height))

    def fit(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        scale = min(height / h, max_width / w)
        size = (min(max_width, max(1, round(w * scale))), min(height, max(1, round(h * scale))))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        panel = np.zeros((height, size[0], 3), np.uint8)
        top = (height - size[1]) // 2
        panel[top : top + size[1]] = small
        return panel

    panels = [fit(current)] + ([fit(goal)] if goal is not None else [])
    view = np.concatenate(panels, axis=1)
    banner = np.zeros((28, view.shape[1], 3), np.uint8)
    cv2.putText(banner, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return np.ascontiguousarray(np.concatenate([view, banner], axis=0))


def _after_rclpy_signal(_signum, _frame) -> None:
    """rclpy's own SIGINT handler runs first (it chains to this one) and shuts the context down; raising
    KeyboardInterrupt as well would interrupt the clean-up wherever it is."""


def quiet_sigint() -> None:
    """Call before `rclpy.init`: Ctrl-C (twice under `ros2 launch`, which forwards the terminal's) then only shuts
    the context down, so a node exits cleanly instead of printing a KeyboardInterrupt traceback from its clean-up."""
    signal.signal(signal.SIGINT, _after_rclpy_signal)


def ignore_sigint() -> None:
    """Call when clean-up starts: a further Ctrl-C is ignored. Python restores the default action of handled signals
    while the interpreter finalises (after main returns), so a handler would leave a window in which the second
    SIGINT of `ros2 launch` kills the process (exit -2); an ignored signal stays ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

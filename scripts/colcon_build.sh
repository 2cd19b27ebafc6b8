#!/usr/bin/env bash
# The README's colcon route on the venv: a workspace whose src/vjepa2_ros is this repository, both packages built
# with `colcon build --packages-select vjepa2_interfaces vjepa2_ros`. colcon does not look inside a package folder
# (this repository's root is the vjepa2_ros package), so the interface package's folder is a second base path.
#   usage: scripts/colcon_build.sh [WORKSPACE]   (default build/colcon_ws; prints the workspace path last)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
V=${VENV:-$repo/.venv}
ws=$(mkdir -p "${1:-$repo/build/colcon_ws}/src" && cd "${1:-$repo/build/colcon_ws}" && pwd)
source "$repo/scripts/ros_cmake_env.sh"
ln -sfn "$repo" "$ws/src/vjepa2_ros"
cd "$ws"
colcon --log-base log build --base-paths src/vjepa2_ros src/vjepa2_ros/vjepa2_interfaces \
  --packages-select vjepa2_interfaces vjepa2_ros \
  --cmake-args -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF -Wno-dev >&2
for pkg in vjepa2_interfaces vjepa2_ros; do  # colcon only warns about a selected package it did not find
  [ -f "$ws/install/$pkg/share/$pkg/package.xml" ] || { echo "colcon_build.sh: $pkg was not built" >&2; exit 1; }
done
echo "$ws"

#!/usr/bin/env bash
# Build the vjepa2_interfaces ament_cmake package into the venv prefix with plain CMake.
set -euo pipefail
V=${VENV:-$PWD/.venv}
source "$(dirname "$0")/ros_cmake_env.sh"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S vjepa2_interfaces -B build/vjepa2_interfaces "${GEN[@]}" -DCMAKE_INSTALL_PREFIX="$V" \
  -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF >/dev/null
cmake --build build/vjepa2_interfaces --target install >/dev/null
echo "vjepa2_interfaces installed into $V"

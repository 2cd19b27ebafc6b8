#!/usr/bin/env bash
# Build the vjepa2_interfaces ament_cmake package into the venv prefix with plain CMake.
# The PyPI ROS message wheels carry CMake files with a build-machine Python include path; point them at ours.
set -euo pipefail
V=${VENV:-$PWD/.venv}
PYINC=$("$V/bin/python" -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
NPINC=$("$V/bin/python" -c 'import numpy;print(numpy.get_include())')
# (grep finds nothing once rewritten; that must not stop the build under pipefail)
{ grep -rl /opt/python/cp311-cp311 "$V/share" --include='*.cmake' 2>/dev/null || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
PATH="$V/bin:$PATH" cmake -S vjepa2_interfaces -B build/vjepa2_interfaces "${GEN[@]}" -DCMAKE_PREFIX_PATH="$V" \
  -DCMAKE_INSTALL_PREFIX="$V" -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF >/dev/null
PATH="$V/bin:$PATH" cmake --build build/vjepa2_interfaces --target install >/dev/null
echo "vjepa2_interfaces installed into $V"

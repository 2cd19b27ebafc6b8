# Sourced by the build scripts: point the PyPI ROS wheels' CMake files at this venv's Python (../shared/ros/NOTES.md)
# and export the variables CMake/colcon need to find the ROS packages installed in the venv.
#   needs: V (the venv directory)
PYINC=$("$V/bin/python" -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
NPINC=$("$V/bin/python" -c 'import numpy;print(numpy.get_include())')
# (grep finds nothing once rewritten; that must not stop the build under pipefail)
{ grep -rl /opt/python/cp311-cp311 "$V/share" --include='*.cmake' 2>/dev/null || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g"
export PATH="$V/bin:$PATH"
export CMAKE_PREFIX_PATH="$V${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export AMENT_PREFIX_PATH="$V${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"

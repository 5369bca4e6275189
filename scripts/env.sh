# Source me: puts the project's cached venv (libtorch + Python references) on PATH and
# points the tch build and the binaries at its libtorch. Used by setup.sh, test.sh and run.sh.
IMAGELAB_CACHE="${IMAGELAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagelab}"
IMAGELAB_VENV="${IMAGELAB_VENV:-$IMAGELAB_CACHE/venv}"
export IMAGELAB_CACHE IMAGELAB_VENV
export PATH="$IMAGELAB_VENV/bin:$HOME/.cargo/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH_BYPASS_VERSION_CHECK="${LIBTORCH_BYPASS_VERSION_CHECK:-0}"
export IMAGELAB_PYTHON="$IMAGELAB_VENV/bin/python"
if [ -x "$IMAGELAB_PYTHON" ]; then
  _torch_lib="$("$IMAGELAB_PYTHON" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
  if [ -n "$_torch_lib" ]; then
    export LIBTORCH_LIB="$_torch_lib"
    export LD_LIBRARY_PATH="$_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  unset _torch_lib
fi
# Build outputs live outside the clone so repeat runs (and CI on a fresh clone) are quick.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$IMAGELAB_CACHE/target}"

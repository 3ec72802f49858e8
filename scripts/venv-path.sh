# Sourced by install.sh and env.sh: the project's venv lives OUTSIDE the clone, keyed by the
# lock file's hash and the Python version, so a fresh clone with an unchanged lock reuses it.
_emorepro_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_emorepro_py=${EMOREPRO_PYTHON:-python3}
_emorepro_key=$( { cat "$_emorepro_top/requirements.txt" "$_emorepro_top/requirements-lock.txt"; "$_emorepro_py" -c 'import sys,platform;print(sys.version_info[:2],platform.machine())'; } | sha256sum | cut -c1-16)
EMOREPRO_VENV=${EMOREPRO_VENV:-${EMOREPRO_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/emorepro}/venv-$_emorepro_key}
export EMOREPRO_VENV

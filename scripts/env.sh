# Source me: puts the project's venv first on PATH (after scripts/install.sh built it).
source "$(dirname "${BASH_SOURCE[0]}")/venv-path.sh"
export PATH="$EMOREPRO_VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1   # nothing is ever fetched from a hub at run time
export PYTHONHASHSEED=0

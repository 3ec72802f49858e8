# Source me: puts the project's venv first on PATH (after scripts/install.sh built it), and this
# clone's src/ first on PYTHONPATH: the venv is shared by every clone with the same lock file and its
# editable install points at whichever clone ran install.sh last, so without this a second clone would
# run (and record in its provenance) the other clone's code.  The workflow does the same for its jobs.
source "$(dirname "${BASH_SOURCE[0]}")/venv-path.sh"
export PATH="$EMOREPRO_VENV/bin:$PATH"
export PYTHONPATH="$_emorepro_top/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1   # nothing is ever fetched from a hub at run time
export PYTHONHASHSEED=0

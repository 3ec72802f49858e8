#!/usr/bin/env bash
# Install everything emorepro needs on a fresh Debian/Ubuntu machine; idempotent and quick
# when nothing changed.
#   1. Debian packages: espeak-ng (demo corpus), libsndfile1 (fairseq2n), TeX (table compile test).
#   2. A venv outside the clone, keyed by requirements*.txt (scripts/venv-path.sh); built once.
#   3. This checkout installed into it in editable mode (seconds).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$top/scripts/venv-path.sh"

APT_PACKAGES=(espeak-ng libsndfile1 texlive-latex-base texlive-latex-recommended)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install.sh: apt packages: ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi

if [ ! -f "$EMOREPRO_VENV/.emorepro-complete" ]; then
    echo "install.sh: building $EMOREPRO_VENV (about 4 GB of wheels, ~5 min)" >&2
    rm -rf "$EMOREPRO_VENV"
    mkdir -p "$(dirname "$EMOREPRO_VENV")"
    "${EMOREPRO_PYTHON:-python3}" -m venv "$EMOREPRO_VENV"
    "$EMOREPRO_VENV/bin/pip" install -q --upgrade pip setuptools wheel
    "$EMOREPRO_VENV/bin/pip" install -q -r "$top/requirements.txt" -c "$top/requirements-lock.txt"
    "$EMOREPRO_VENV/bin/pip" check
    touch "$EMOREPRO_VENV/.emorepro-complete"   # written last: an interrupted build is redone
fi
# Editable install of this checkout (its own console script `emorepro`); no dependencies touched.
# Other clones sharing this venv still run their own code: scripts/env.sh and the workflow put each
# clone's src/ first on PYTHONPATH.
"$EMOREPRO_VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$top" >/dev/null
echo "$EMOREPRO_VENV"

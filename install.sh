#!/usr/bin/env bash
# Installs everything deepafx-rt needs, idempotently: Debian packages (lilv,
# LV2 plugins, JACK), a virtualenv in .venv and the package with all its extras
# (dev tools, the live host, training).
# Used by the README's commands, by .ci/run and by the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  liblilv-0-0 lilv-utils lv2-dev          # lilv (the binding dlopens liblilv), lv2bench, lv2apply
  calf-plugins lsp-plugins-lv2 x42-plugins # the plugins the chains use
  jackd2 jalv                              # live host and its C reference
  libsndfile1                              # soundfile's backend
  warzone2100-music fretsonfire-songs-muldjord fretsonfire-songs-sectoid  # mastered music (data sets)
  guitarix-lv2 fluidsynth fluid-soundfont-gm                 # distortion: reference preamp, clean guitar/bass
  sonic-pi-samples hydrogen-drumkits-effects lmms-common     # distortion: recorded guitar samples
  tuxpaint-stamps-default                                    # nonspeech: human-read clips (many languages)
  chromium chromium-driver                                   # tests: the web control page in a real browser
  python3 python3-venv                     # the interpreter, when the system has none
)

need=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "install.sh: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  echo "jackd2 jackd/tweak_rt_limits boolean false" | $SUDO debconf-set-selections
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "install.sh: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.deepafx-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "install.sh: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev,live,training]"
  touch "$stamp"
fi

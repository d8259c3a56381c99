#!/usr/bin/env bash
# Set up a fresh Debian / Ubuntu / Raspberry Pi OS machine for edge-har.
#
#   scripts/bootstrap.sh                  # workstation: train + device + web + test extras in .venv
#   EDGE_HAR_EXTRAS=device scripts/bootstrap.sh   # a Pi: the runtime only, no TensorFlow
#
# Installs mosquitto (the tests and the demo start their own broker) when it is
# missing, then a virtual environment with the project installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${EDGE_HAR_EXTRAS:-train,device,web,dev}"
VENV="${EDGE_HAR_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
"$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
# The web pages' browser tests (issue 14) drive Debian's chromium through Playwright; Playwright's
# own browser download (`playwright install`) needs the internet and is never used.
if [[ ",$EXTRAS," == *",dev,"* ]] && [ ! -x /usr/bin/chromium ]; then
  need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "bootstrap: installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "bootstrap: installing edge-har[$EXTRAS] into $VENV"
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
echo "bootstrap: done ($("$VENV/bin/python" --version), extras: $EXTRAS)"

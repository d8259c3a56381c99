#!/usr/bin/env bash
# Set up a fresh Debian / Ubuntu / Raspberry Pi OS machine for edge-har.
#
#   scripts/bootstrap.sh                  # workstation: train + device + web + test + bench extras in .venv
#   EDGE_HAR_EXTRAS=device scripts/bootstrap.sh   # a Pi: the runtime only, no TensorFlow
#
# Installs mosquitto (the tests and the demo start their own broker) when it is
# missing, then a virtual environment with the project installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${EDGE_HAR_EXTRAS:-train,device,web,dev,bench}"
VENV="${EDGE_HAR_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
"$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
# The web pages' browser tests drive Debian's chromium through Playwright; Playwright's
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

# --- PostgreSQL for the web store's tests ------------------------------------------------------
# tests/test_web_store.py and tests/test_web_live.py run on SQLite and on PostgreSQL: the server on
# 127.0.0.1:5432, user postgres, trust auth (tests/plugins/db.py makes and drops its own database).
# Where none answers: Debian's postgresql, its cluster trusting local TCP, started without systemd.
pg_answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if [[ ",$EXTRAS," == *",dev,"* ]] && ! pg_answers; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if [ -z "$(ls -A /etc/postgresql 2>/dev/null)" ]; then
    echo "bootstrap: installing PostgreSQL (the web store tests)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql
  fi
  pg_version="$(ls /etc/postgresql | sort -V | tail -1)"
  pg_hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
  if ! $SUDO grep -q "edge-har: trust local TCP" "$pg_hba"; then  # first matching line wins: prepend
    $SUDO sed -i '1i # edge-har: trust local TCP (scripts/bootstrap.sh, a test machine)\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$pg_hba"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start 2>/dev/null ||
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload
  for _ in $(seq 30); do pg_answers && break; sleep 1; done
  pg_answers || { echo "bootstrap: PostgreSQL $pg_version did not start on 127.0.0.1:5432" >&2; exit 1; }
  echo "bootstrap: PostgreSQL $pg_version on 127.0.0.1:5432 (trust for local TCP)"
fi
# -----------------------------------------------------------------------------------------------

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "bootstrap: installing edge-har[$EXTRAS] into $VENV"
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
echo "bootstrap: done ($("$VENV/bin/python" --version), extras: $EXTRAS)"

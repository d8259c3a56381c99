#!/usr/bin/env bash
# The Pi install, proved on arm64 under emulation: a Debian bookworm arm64 root (Python 3.11, the
# base of Raspberry Pi OS bookworm) run through qemu-user-static + binfmt_misc, and inside it, as a
# user would on a Pi, for each extra (.[device]: ai-edge-litert, numpy 2; .[tflite]: tflite-runtime
# 2.14, numpy<2):
#   1. python3 -m venv, pip install of a wheel built on the host (with [<extra>,imu], as
#      firmware_configs/README.md says), no TensorFlow; each step timed, versions printed;
#   2. edge-har --help, edge-har validate-config --no-files on every firmware_configs/*.yaml;
#   3. the daemon (python -m edge_har run, as the systemd unit) on a replay through a bundle
#      converted on the host, per variant, publishing to a mosquitto on the host's loopback
#      (qemu-user shares the host's network); a host subscriber checks the predictions arrive;
#   4. the same windows through every variant on both machines (scripts/arm64/predict.py, the
#      device's own interpreter code): label agreement and largest probability difference,
#      failing when labels differ on more than --max-disagree of the windows.
#
#   scripts/arm64_check.sh                              # CI: synthetic demo bundle and windows
#   scripts/arm64_check.sh --bundle /tmp/bundles/hmp --windows-from ../shared/data/hmp/HMP \
#       --json benchmarks/results/arm64-hmp.json          # the figures in benchmarks/README.md
#
# Options: --bundle DIR (a converted bundle; default: a tiny one converted here), --windows-from
# DATA (recordings in the folder/HMP layout; default: the demo's synthetic ones), --max-windows N
# (default 1000), --max-disagree SHARE (default 0.01), --extras "device tflite", --json FILE.
# Environment: EDGE_HAR_ARM64_CACHE (the root and its stamp; default /var/cache/edge-har/arm64,
# reused while valid), EDGE_HAR_ARM64_MIRROR (default http://deb.debian.org/debian),
# EDGE_HAR_ARM64_JSON (as --json), EDGE_HAR_HOST_PYTHON (the workstation venv: default .venv),
# EDGE_HAR_ARM64_CPU (the emulated core: cortex-a72, a Pi 4, by default), EDGE_HAR_ARM64_KNOWN_UNLOADABLE
# (EXTRA:VARIANT pairs reported as known not to load; default tflite:dynamic_range, see below).
#
# Needs root (debootstrap, chroot, mount). Exit status: 0 passed; 77 skipped because the kernel
# refuses binfmt_misc (the reason is printed); anything else failed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
SKIP=77

CACHE="${EDGE_HAR_ARM64_CACHE:-/var/cache/edge-har/arm64}"
MIRROR="${EDGE_HAR_ARM64_MIRROR:-http://deb.debian.org/debian}"
HOST_PY="${EDGE_HAR_HOST_PYTHON:-$REPO/.venv/bin/python}"
JSON="${EDGE_HAR_ARM64_JSON:-}"
SUITE=bookworm
# The CPU qemu emulates: a Pi 4's Cortex-A72 by default (no SVE, no dot product), so a wheel that
# needs more than a Pi 4 has fails here; cortex-a76 is a Pi 5, cortex-a53 a Pi Zero 2 W / Pi 3.
ARM_CPU="${EDGE_HAR_ARM64_CPU:-cortex-a72}"
# What the root gets beyond minbase. python3-venv/-pip: what a Pi user needs for a venv (Raspberry
# Pi OS ships python3); ca-certificates: pip's HTTPS. Nothing else turned out to be needed: every
# dependency has an aarch64 wheel on PyPI, so no compiler, no python3-dev, no system libraries.
ROOT_PACKAGES="python3,python3-venv,python3-pip,ca-certificates"
ROOT_STAMP="suite=$SUITE arch=arm64 variant=minbase include=$ROOT_PACKAGES layout=1"

# Known: tflite-runtime 2.14 cannot load the dynamic_range variant of a real bundle (this TensorFlow's
# converter writes FULLY_CONNECTED version 12 for per-channel dynamic-range weights; 2.14 knows up to
# 11). Reported as KNOWN, not a failure; any other variant that cannot load fails the check.
KNOWN_UNLOADABLE="${EDGE_HAR_ARM64_KNOWN_UNLOADABLE-tflite:dynamic_range}"
BUNDLE=""
WINDOWS_FROM=""
MAX_WINDOWS=1000
MAX_DISAGREE=0.01
EXTRAS="device tflite"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) BUNDLE="$(realpath "$2")"; shift 2 ;;
    --windows-from) WINDOWS_FROM="$(realpath "$2")"; shift 2 ;;
    --max-windows) MAX_WINDOWS="$2"; shift 2 ;;
    --max-disagree) MAX_DISAGREE="$2"; shift 2 ;;
    --extras) EXTRAS="$2"; shift 2 ;;
    --json) JSON="$(realpath -m "$2")"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "arm64_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
WINDOWS_NAME=demo
[ -n "$WINDOWS_FROM" ] && WINDOWS_NAME="$(basename "$WINDOWS_FROM")"

die() { echo "arm64_check: FAILED: $*" >&2; exit 1; }
skip() { echo "arm64_check: SKIP: $*" >&2; rm -rf "${RESULTS:-}"; exit "$SKIP"; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot and mount); run it with sudo"
[ -x "$HOST_PY" ] || die "no host Python at $HOST_PY (run scripts/bootstrap.sh, or set EDGE_HAR_HOST_PYTHON)"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }  # milliseconds -> "12.3"
STARTED=$(now_ms)
exec 3>&2  # timed's "took" lines reach the console even when a step's output goes to a log
RESULTS="$(mktemp -d /tmp/edge-har-arm64.XXXXXX)"
TIMINGS="$RESULTS/timings.tsv"
: >"$TIMINGS"
# timed STEP CMD...: run CMD, append "STEP<TAB>seconds" to timings.tsv
timed() {
  local step="$1" t0 took rc=0
  shift
  t0=$(now_ms)
  "$@" || rc=$?
  took="$(secs $(($(now_ms) - t0)))"
  printf '%s\t%s\n' "$step" "$took" >>"$TIMINGS"
  echo "arm64_check: $step took $took s" >&3
  return "$rc"
}

# ------------------------------------------------------------------ host packages and binfmt_misc
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
if [ ${#need[@]} -gt 0 ]; then
  echo "arm64_check: installing ${need[*]}"
  apt-get update -qq || die "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    || die "apt-get install ${need[*]}"
fi
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/status" ]; then
  mkdir -p "$BINFMT" 2>/dev/null || true
  if ! err=$(mount -t binfmt_misc binfmt_misc "$BINFMT" 2>&1 | head -1; exit "${PIPESTATUS[0]}"); then
    skip "the kernel refuses binfmt_misc (mount -t binfmt_misc: ${err:-failed}), so arm64 binaries cannot run here"
  fi
fi
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
  # update-binfmts could not (e.g. no binfmt-support service in a container): register it by hand,
  # the line Debian's qemu-user-static registers (F: the interpreter is opened now, so it works in a chroot)
  line=':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:FP'
  if ! err=$(printf '%s' "$line" 2>&1 >"$BINFMT/register"); then
    skip "the kernel refuses to register a binfmt_misc handler for aarch64 (${err:-write to $BINFMT/register failed})"
  fi
fi
[ "$(head -1 "$BINFMT/qemu-aarch64")" = "enabled" ] || echo 1 >"$BINFMT/qemu-aarch64" \
  || die "cannot enable $BINFMT/qemu-aarch64"
echo "arm64_check: binfmt_misc: qemu-aarch64 $(head -1 "$BINFMT/qemu-aarch64"), $(grep -m1 flags "$BINFMT/qemu-aarch64")"

# ------------------------------------------------------------------ the arm64 root (cached)
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock -w 3600 9 || die "another arm64 check holds $CACHE/lock"
ROOT="$CACHE/root"
CHECK=/tmp/edge-har-check  # inside the root

# every mount under the root or a half-made one (debootstrap mounts proc and sys too), deepest first
mounts_under_root() { awk -v p="$(realpath -m "$CACHE")/root" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r; }
unmount_root() {
  local m
  for m in $(mounts_under_root); do umount "$m" 2>/dev/null || umount -l "$m"; done
}
BROKER_PID=""
SUB_PID=""
cleanup() {
  local rc=$? pid
  set +e  # clean up everything, whatever fails on the way
  for pid in $SUB_PID $BROKER_PID; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  unmount_root
  rm -rf --one-file-system "${ROOT:?}$CHECK"
  if [ "$rc" -eq 0 ]; then rm -rf "$RESULTS"; else echo "arm64_check: results kept in $RESULTS" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_root() {
  unmount_root
  [ -z "$(mounts_under_root)" ] || die "still mounted under $ROOT: $(mounts_under_root | tr '\n' ' ')"
  rm -rf --one-file-system "$ROOT" "$ROOT.new" "$CACHE/root.stamp"
  echo "arm64_check: debootstrap --arch=arm64 --variant=minbase $SUITE from $MIRROR (several minutes)"
  debootstrap --arch=arm64 --variant=minbase --include="$ROOT_PACKAGES" "$SUITE" "$ROOT.new" "$MIRROR" \
    >"$RESULTS/debootstrap.log" 2>&1 || { tail -30 "$RESULTS/debootstrap.log" >&2; die "debootstrap (log: $RESULTS/debootstrap.log)"; }
  mv "$ROOT.new" "$ROOT"
  chroot "$ROOT" /usr/bin/python3 -c "import venv, ensurepip" || die "the new root's python3 has no venv/ensurepip"
  apt_clean
  echo "$ROOT_STAMP" >"$CACHE/root.stamp"
}
apt_clean() { chroot "$ROOT" /usr/bin/apt-get clean >/dev/null 2>&1 || true; }
if [ -f "$CACHE/root.stamp" ] && [ "$(cat "$CACHE/root.stamp")" = "$ROOT_STAMP" ] && [ -x "$ROOT/usr/bin/python3" ]; then
  echo "arm64_check: reusing the arm64 root in $ROOT (delete $CACHE/root.stamp to rebuild)"
  printf 'root_reused\t0\n' >>"$TIMINGS"
else
  timed root build_root
fi
chroot "$ROOT" /usr/bin/uname -m | grep -qx aarch64 || die "the root's binaries do not run as aarch64"

mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
# qemu 7.2 (bookworm's) shows the host's x86 /proc/cpuinfo to arm64 programs, and LiteRT's cpuinfo
# library segfaults parsing it (ai-edge-litert 2.3: Interpreter() dies at once). A Pi's /proc/cpuinfo
# for the emulated core, one entry per host CPU (what /sys/devices/system/cpu says), stands in for it.
case "$ARM_CPU" in
  cortex-a72) part=0xd08 ;;
  cortex-a76) part=0xd0b ;;
  cortex-a53) part=0xd03 ;;
  *) die "EDGE_HAR_ARM64_CPU=$ARM_CPU: choose cortex-a72 (Pi 4), cortex-a76 (Pi 5) or cortex-a53 (Pi Zero 2 W)" ;;
esac
for i in $(seq 0 $(($(nproc) - 1))); do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n' "$i"
  printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$part"
done >"$RESULTS/cpuinfo"
mount --bind "$RESULTS/cpuinfo" "$ROOT/proc/cpuinfo"
echo "qemu-user $(qemu-aarch64-static --version | head -1 | awk '{print $3}') -cpu $ARM_CPU, Debian $SUITE arm64" >"$RESULTS/emulation.txt"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# the host's CA bundle, so pip in the root trusts what the host's pip trusts (a TLS-inspecting proxy, say)
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/edge-har-host-ca.crt"
echo "arm64_check: root: $(chroot "$ROOT" /usr/bin/python3 --version), $(grep PRETTY "$ROOT/etc/os-release" | cut -d'"' -f2), $(chroot "$ROOT" /usr/bin/uname -m), qemu $(qemu-aarch64-static --version | head -1 | awk '{print $3}') as $ARM_CPU"

# in_root CMD...: run CMD in the root with a clean environment, as root would on a Pi with sudo
in_root() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb QEMU_CPU="$ARM_CPU" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/edge-har-host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    PIP_PROGRESS_BAR=off ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} PYTHONUNBUFFERED=1 "$@"
}

# ------------------------------------------------------------------ host side: wheel, bundle, windows
W="$ROOT$CHECK"
rm -rf --one-file-system "$W"
mkdir -p "$W/wheel" "$W/configs" "$RESULTS/host"
echo "arm64_check: building the wheel on the host"
timed host_wheel "$HOST_PY" -m pip wheel -q --no-deps -w "$W/wheel" "$REPO" >"$RESULTS/host/wheel.log" 2>&1 \
  || { tail -30 "$RESULTS/host/wheel.log" >&2; die "pip wheel on the host"; }
WHEEL="$(basename "$(ls "$W"/wheel/edge_har-*.whl)")"
echo "arm64_check: host: bundle and $WINDOWS_NAME windows"
PREP="$RESULTS/prep"
prep_args=("$PREP")
[ -n "$BUNDLE" ] && prep_args+=(--bundle "$BUNDLE")
[ -n "$WINDOWS_FROM" ] && prep_args+=(--windows-from "$WINDOWS_FROM")
timed host_prepare env PYTHONPATH="$REPO" TF_CPP_MIN_LOG_LEVEL=3 "$HOST_PY" "$REPO/scripts/arm64/host_prepare.py" \
  "${prep_args[@]}" --max-windows "$MAX_WINDOWS" >"$RESULTS/host/prepare.json" 2>"$RESULTS/host/prepare.log" \
  || { tail -30 "$RESULTS/host/prepare.log" >&2; die "scripts/arm64/host_prepare.py (log: $RESULTS/host/prepare.log)"; }
json_field() { tail -1 "$RESULTS/host/prepare.json" | "$HOST_PY" -c "import json, sys; v = json.load(sys.stdin)['$1']; print(' '.join(v) if isinstance(v, list) else v)"; }
VARIANTS="$(json_field variants)"
echo "arm64_check: host: bundle $(json_field bundle) ($VARIANTS), $(json_field windows) of $(json_field windows_available) windows from $(json_field windows_from)"
cp -r "$(json_field bundle)" "$W/bundle"
mkdir -p "$W/data"
cp "$PREP/windows.npy" "$W/data/windows.npy"
cp -r "$PREP/replay" "$W/data/replay"
cp "$REPO/scripts/arm64/predict.py" "$W/predict.py"
cp "$REPO"/firmware_configs/*.yaml "$W/configs/"
timed host_predict "$HOST_PY" "$W/predict.py" "$W/bundle" "$W/data/windows.npy" "$RESULTS/host/probs"

# ------------------------------------------------------------------ the broker on the host's loopback
PORT="$("$HOST_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" >"$RESULTS/mosquitto.conf"
"$MOSQUITTO" -c "$RESULTS/mosquitto.conf" >"$RESULTS/mosquitto.log" 2>&1 9>&- &
BROKER_PID=$!
for _ in $(seq 50); do
  "$HOST_PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
  sleep 0.1
done
echo "arm64_check: mosquitto on 127.0.0.1:$PORT (pid $BROKER_PID)"

daemon_config() {  # EXTRA VARIANT -> a config inside the root
  cat >"$W/configs/check-$1-$2.yml" <<EOF
# written by scripts/arm64_check.sh: a replay through the host's bundle to the host's broker
device_id: arm64-$1-$2
bundle: $CHECK/bundle
variant: $2
interpreter: {backend: auto, num_threads: 1}
source: {type: replay, path: $CHECK/data/replay, format: folder, realtime: false, stop_at_end: true}
mqtt: {host: 127.0.0.1, port: $PORT, stats_interval_s: 5.0}
logging: {level: INFO}
EOF
  echo "$CHECK/configs/check-$1-$2.yml"
}

# ------------------------------------------------------------------ each extra in its own venv in the root
check_extra() {
  local extra="$1" backend venv out
  case "$extra" in
    device) backend=ai_edge_litert ;;
    tflite) backend=tflite_runtime ;;
    *) die "unknown extra $extra (device, tflite)" ;;
  esac
  venv="/opt/edge-har/venv-$extra"
  out="$RESULTS/$extra"
  mkdir -p "$out"
  echo "== arm64 .[$extra,imu]: $venv"
  rm -rf --one-file-system "$ROOT$venv"
  timed "$extra:venv" in_root python3 -m venv "$venv"
  timed "$extra:pip_install" in_root "$venv/bin/pip" install "$CHECK/wheel/$WHEEL[$extra,imu]" \
    >"$out/pip-install.log" 2>&1 || { tail -40 "$out/pip-install.log" >&2; die "pip install .[$extra,imu] in the arm64 root"; }
  if grep -E "Building wheel for|Running setup.py install" "$out/pip-install.log"; then
    echo "arm64_check: note: pip built the packages above from source (no aarch64 wheel)"
  fi
  in_root "$venv/bin/pip" list --format=json >"$out/versions.json"
  in_root "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)" \
    || die ".[$extra] installed TensorFlow in the arm64 root"
  in_root "$venv/bin/python" -c "
import importlib.metadata as m, platform
names = ['edge-har', 'numpy', '$([ "$extra" = device ] && echo ai-edge-litert || echo tflite-runtime)', 'paho-mqtt', 'pydantic', 'opencv-python-headless', 'PyYAML', 'psutil']
print('arm64_check: installed on', platform.machine(), 'python', platform.python_version() + ':', ', '.join(n + ' ' + m.version(n) for n in names), '(no tensorflow)')"
  timed "$extra:help" in_root "$venv/bin/edge-har" --help >"$out/help.txt" || die "edge-har --help in the arm64 root"
  local cfg t0
  t0=$(now_ms)
  for cfg in "$W"/configs/*.yaml; do
    in_root "$venv/bin/edge-har" validate-config --no-files "$CHECK/configs/$(basename "$cfg")" \
      || die "edge-har validate-config --no-files $(basename "$cfg") in the arm64 root (.[$extra])"
  done
  printf '%s\t%s\n' "$extra:validate_configs" "$(secs $(($(now_ms) - t0)))" >>"$TIMINGS"
  local variant config
  for variant in $VARIANTS; do
    config="$(daemon_config "$extra" "$variant")"
    rm -f "$out/ready-$variant"
    "$HOST_PY" "$REPO/scripts/arm64/subscribe.py" --port "$PORT" --device-id "arm64-$extra-$variant" \
      --ready "$out/ready-$variant" --out "$out/daemon-$variant.json" --timeout 600 9>&- &
    SUB_PID=$!
    for _ in $(seq 100); do [ -e "$out/ready-$variant" ] && break; sleep 0.1; done
    [ -e "$out/ready-$variant" ] || die "the host subscriber did not subscribe"
    local drc=0
    timed "$extra:daemon_$variant" in_root timeout 600 "$venv/bin/python" -m edge_har run --config "$config" \
      >"$out/daemon-$variant.log" 2>&1 || drc=$?
    if [ "$drc" -ne 0 ]; then
      # recorded for report.py, which fails the check unless this extra is known not to load this variant
      kill "$SUB_PID" 2>/dev/null || true
      wait "$SUB_PID" 2>/dev/null || true
      SUB_PID=""
      tail -5 "$out/daemon-$variant.log" >&2
      echo "arm64_check: the daemon ($variant, .[$extra]) exited $drc" >&2
      "$HOST_PY" - "$out/daemon-$variant.json" "$drc" "$out/daemon-$variant.log" <<'PY'
import json, sys
log = open(sys.argv[3], errors="replace").read().splitlines()
errors = [line for line in log if " ERROR " in line] or log[-1:]
json.dump({"predictions": 0, "stopped": False, "exit": int(sys.argv[2]), "error": "".join(errors[-1:])[:500]},
          open(sys.argv[1], "w"))
PY
      continue
    fi
    wait "$SUB_PID" || { tail -30 "$out/daemon-$variant.log" >&2; die "the host did not receive the arm64 daemon's predictions ($variant)"; }
    SUB_PID=""
  done
  timed "$extra:predict" in_root "$venv/bin/python" "$CHECK/predict.py" --expect-backend "$backend" \
    "$CHECK/bundle" "$CHECK/data/windows.npy" "$CHECK/probs-$extra" || die "predict.py in the arm64 root (.[$extra])"
  cp -r "$W/probs-$extra" "$out/probs"
}

for extra in $EXTRAS; do check_extra "$extra"; done
apt_clean

printf 'total\t%s\n' "$(secs $(($(now_ms) - STARTED)))" >>"$TIMINGS"
echo "== summary"
"$HOST_PY" "$REPO/scripts/arm64/report.py" "$RESULTS" --windows-name "$WINDOWS_NAME" --max-disagree "$MAX_DISAGREE" \
  --known-unloadable "$KNOWN_UNLOADABLE" \
  ${JSON:+--json "$JSON"}

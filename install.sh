#!/usr/bin/env bash
# Set up evercall on a fresh Debian/Ubuntu machine: system libraries, then a virtual environment in .venv.
# Usage: bash install.sh          (runtime only)
#        bash install.sh --test   (runtime + test and benchmark tools, and what the cluster/SFU tests run)
#        bash install.sh --cluster  (runtime + Janus and Ray: several far ends per call, calls on GPU workers)
# Re-running is cheap: apt and pip skip what is already there.
set -euo pipefail
cd "$(dirname "$0")"
WANT_TEST=0
WANT_CLUSTER=0
for arg in "$@"; do
  case "$arg" in
    --test) WANT_TEST=1; WANT_CLUSTER=1 ;;
    --cluster) WANT_CLUSTER=1 ;;
  esac
done
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# System packages: PortAudio for sounddevice, espeak-ng to speak the demo persona's lines,
# ffmpeg for reading odd containers; chromium for the real-browser tests.
APT_PKGS="libportaudio2 espeak-ng libgl1 libglib2.0-0"
# festival voices of real speakers (kal, ked, slt): the voice benchmark's and tests' yardstick speech.
[ $WANT_TEST = 1 ] && APT_PKGS="$APT_PKGS chromium festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
# Janus WebRTC server (videoroom plugin): `evercall serve --sfu janus` starts a private one.
if [ $WANT_CLUSTER = 1 ]; then APT_PKGS="$APT_PKGS janus"; fi
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
  # The package enables a system-wide Janus with its sample configuration: evercall starts its own private one.
  case " $missing " in *" janus "*) $SUDO systemctl disable --now janus >/dev/null 2>&1 || true ;; esac
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q -U pip "setuptools<81" wheel
# torch first: 2.13.0 resolves to the local CPU build; an unpinned torch would pull GBs of CUDA packages.
$PIP install -q "torch==2.13.0"
if [ $WANT_TEST = 1 ]; then $PIP install -q -e ".[test]"; else $PIP install -q -e .; fi
# Ray (the cluster extra): `evercall cluster` places calls on GPU workers.
if [ $WANT_CLUSTER = 1 ]; then $PIP install -q -e ".[cluster]"; fi
# insightface last and without its dependencies, so it does not add opencv-python beside opencv-contrib-python.
$PIP install -q --no-deps "insightface==2.1"
# One OpenCV build: a venv made before albumentations was dropped still holds opencv-python-headless. Both
# builds own cv2/, so removing it deletes files of the contrib build too: reinstall that one afterwards.
if $PIP show -q opencv-python-headless >/dev/null 2>&1; then
  CONTRIB=$($PIP show opencv-contrib-python | sed -n 's/^Version: //p')
  $PIP uninstall -y -q opencv-python-headless albumentations albucore
  $PIP install -q --force-reinstall --no-deps "opencv-contrib-python==$CONTRIB"
fi
CV_BUILDS=$($PIP list 2>/dev/null | awk 'tolower($1) ~ /^opencv/ {print $1}' | tr '\n' ' ')
[ "$CV_BUILDS" = "opencv-contrib-python " ] || { echo "expected one OpenCV build (opencv-contrib-python), found: $CV_BUILDS" >&2; exit 1; }
echo "evercall installed in .venv ($(.venv/bin/python --version))"

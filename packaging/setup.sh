#!/usr/bin/env bash
# One command from a fresh Debian 12 clone to the workbench on the default model:
# Debian packages, models into the cache (SHA-256 checked), a Release build, then the GUI.
#   packaging/setup.sh            set up, build, start the workbench
#   packaging/setup.sh --no-gui   set up and build only (CI)
# Re-running skips what is already done.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${PERSONA_BUILD_DIR:-$root/build}"
start_gui=1
for arg in "$@"; do
    case "$arg" in
        --no-gui) start_gui=0 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "setup: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

packages=(
    build-essential cmake ninja-build pkg-config git ca-certificates python3 python3-pip
    qt6-base-dev libgl-dev libqcustomplot-dev libqcustomplot2.1-qt6
    libtorch-dev libopenblas0-pthread   # libtorch is 75x slower on reference BLAS (docs/platform-notes.md)
    libsentencepiece-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libssl-dev   # PCRE2: tokenizer regexes; libssl-dev: SHA-256
    libcpp-httplib-dev   # OpenAI-compatible HTTP judge and trait drafting (pulls libssl-dev)
    xvfb xauth
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "setup: Debian packages present"
fi

"$root/packaging/fetch-models.sh"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"

[ "$start_gui" -eq 1 ] || exit 0
workbench="$build/app/persona-workbench"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ -n "${QT_QPA_PLATFORM:-}" ]; then
    exec "$workbench"
fi
# No display to show a window on: render the window once instead, so the set-up still ends
# with the workbench having loaded the default model.
shot="$build/persona-workbench.png"
echo "setup: no display; rendering the workbench to $shot"
QT_QPA_PLATFORM=offscreen "$workbench" --screenshot "$shot"
echo "setup: workbench ran on the default model; see $shot"

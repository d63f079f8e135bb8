#!/usr/bin/env bash
# Sets up kachery in ./.venv and runs the main job on the embedded default backend:
# store a file, load it back by its URI, and check the bytes are the same; then the same
# for a folder (store-file -r, ls, load-file -r).
# Uses a throwaway storage dir and config so nothing of yours is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/kachery-client ]; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e .
fi
work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
export KACHERY_STORAGE_DIR="$work/kachery-storage"
export KACHERY_CONFIG="$work/config.toml"
export KACHERY_SYSTEM_CONFIG="$work/system-config.toml"
export KACHERY_DAEMON_PORT="${KACHERY_DEMO_PORT:-20499}"   # no node there: the embedded backend is used
head -c 3000000 /dev/urandom > "$work/data.bin"

echo "+ kachery-client store-file data.bin"
uri="$(.venv/bin/kachery-client store-file "$work/data.bin")"
echo "$uri"
echo "+ kachery-client load-file $uri"
path="$(.venv/bin/kachery-client load-file "$uri")"
echo "$path"
echo "+ kachery-client cat-file $uri | cmp - data.bin"
.venv/bin/kachery-client cat-file "$uri" | cmp - "$work/data.bin"
cmp "$path" "$work/data.bin"
mkdir -p "$work/recording/raw"
echo '{"samplerate": 30000}' > "$work/recording/params.json"
head -c 100000 /dev/urandom > "$work/recording/raw/traces.bin"
echo "+ kachery-client store-file -r recording"
dir_uri="$(.venv/bin/kachery-client store-file -r "$work/recording")"
echo "$dir_uri"
echo "+ kachery-client ls -r $dir_uri"
.venv/bin/kachery-client ls -r "$dir_uri"
echo "+ kachery-client load-file -r $dir_uri --dest copy && diff -r recording copy"
.venv/bin/kachery-client load-file -r "$dir_uri" --dest "$work/copy" >/dev/null
diff -r "$work/recording" "$work/copy"
echo "+ kachery-client info"
.venv/bin/kachery-client info
echo "OK: the bytes loaded back by URI are identical to the file and the folder stored."

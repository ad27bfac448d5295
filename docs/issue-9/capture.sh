#!/usr/bin/env bash
# Capture the demo's MQTT stream as an outside subscriber sees it:
#   docs/issue-9/capture.sh NAME   ->  build/golden/NAME.sub.txt (raw), NAME.demo.txt (demo output)
# Uses a copy of firmware-config/demo.toml on port 18871 (so a running demo on 18830 is not disturbed).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
name=$1
out=$root/build/golden
mkdir -p "$out"
sed 's/^port = 18830/port = 18871/' "$root/firmware-config/demo.toml" > "$out/demo.toml"
rm -f "$out/$name.sub.txt"
( for _ in $(seq 1 1200); do (echo > /dev/tcp/127.0.0.1/18871) 2>/dev/null && break; sleep 0.1; done
  exec mosquitto_sub -h 127.0.0.1 -p 18871 -t "facegate/#" -v -F "%t %r %p" > "$out/$name.sub.txt" 2>&1 ) &
sub=$!
cd "$root"
timeout 300 "$root/.venv/bin/facegate" demo -c "$out/demo.toml" --seconds 45 > "$out/$name.demo.txt" 2>&1 || true
sleep 1
kill "$sub" 2>/dev/null || true
pkill -P "$sub" 2>/dev/null || true
python3 "$root/docs/issue-9/normalise.py" "$out/$name.sub.txt" > "$out/$name.norm"
echo "$out/$name.norm"

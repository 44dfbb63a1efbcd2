#!/bin/bash
# Regenerates the TensorBoard pictures of docs/images/ from a two-job sweep (about a minute
# on a 2-core CPU). Needs headless Chromium (Debian: apt-get install chromium).
set -e
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
.venv/bin/genlab-train -m model.lr=2e-4,1e-3 trainer.max_epochs=3 hydra.sweep.dir="$work/sweep" > /dev/null
.venv/bin/tensorboard --logdir "$work/sweep" --host 127.0.0.1 --port 6123 --load_fast=false 2> /dev/null &
server=$!
trap 'kill $server' EXIT
sleep 12
for view in "scalars&tagFilter=D%20and%20G" hparams; do
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1500,1100 \
    --virtual-time-budget=20000 --screenshot="$work/${view%%&*}.png" "http://127.0.0.1:6123/#$view" 2> /dev/null
done
.venv/bin/python - "$work" <<'PY'
import sys
from PIL import Image
for name, height in (("scalars", 880), ("hparams", 300)):
    picture = Image.open(f"{sys.argv[1]}/{name}.png").convert("RGB").crop((0, 0, 1500, height))
    picture = picture.resize((1000, height * 2 // 3), Image.LANCZOS)
    picture.quantize(colors=128).save(f"docs/images/tensorboard-{name}.png", optimize=True)
PY

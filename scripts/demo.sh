#!/usr/bin/env bash
# The main job: set up, build, make a sample model package, then list it, read from it and
# extract it. Everything it writes goes to a fresh temporary folder it names at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BIN=$PWD/build/tools/torshpkg
work=$(mktemp -d /tmp/torshpkg-demo.XXXXXX)
model="$work/model"
mkdir -p "$model/tokenizer"

# A small model folder: weights, a config, a tokenizer, code and a README.
head -c $((24 << 20)) /dev/urandom > "$model/model.safetensors"
cat > "$model/config.json" <<'JSON'
{"architectures": ["DemoForCausalLM"], "hidden_size": 512, "num_layers": 4, "vocab_size": 32000}
JSON
seq 1 32000 | sed 's/^/token_/' > "$model/tokenizer/vocab.txt"
printf 'import torch\n\ndef load(path):\n    return torch.load(path)\n' > "$model/modeling.py"
printf '# Demo model\nA sample package made by scripts/demo.sh.\n' > "$model/README.md"

set -x
"$BIN" create "$work/demo.torshpkg" --name demo-model --version 1.0.0 \
  --description "A sample model package" --author "torshpkg demo" --license Apache-2.0 \
  --meta framework=pytorch --compress zstd:3 --compress-for '*.safetensors=none' \
  --add-dir "=$model" --dependency tokenizers:^0.15:optional
"$BIN" info "$work/demo.torshpkg"
"$BIN" ls "$work/demo.torshpkg"
"$BIN" cat "$work/demo.torshpkg" resources/config.json
"$BIN" cat "$work/demo.torshpkg" resources/tokenizer/vocab.txt --offset 100 --length 60
echo
"$BIN" verify --full "$work/demo.torshpkg"
"$BIN" extract "$work/demo.torshpkg" "$work/extracted"
diff -r "$model" "$work/extracted/resources"
bsdtar -tf "$work/demo.torshpkg" 2>/dev/null | head -20 || true
{ set +x; } 2>/dev/null
echo "demo OK: package $work/demo.torshpkg, extracted into $work/extracted (identical to the source)"

#!/usr/bin/env bash
# The main job: set up, build, make a sample model package, list it, read from it, extract it,
# sign it, mount it (standalone and through torshpkgd) and show the lineage journal. Everything it writes goes to a fresh temporary folder it names at the end.
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

# Sign it, trust the key, and mount it as a read-only folder.
export TORSHPKG_JOURNAL="$work/lineage.jsonl"
"$BIN" keygen "$work/demo-key"
mkdir -p "$work/trusted" && cp "$work/demo-key.pub" "$work/trusted/"
"$BIN" sign "$work/demo.torshpkg" --key "$work/demo-key.key"
mkdir -p "$work/mnt"
"$BIN" mount "$work/demo.torshpkg" "$work/mnt" --trusted-keys "$work/trusted" --standalone
ls -l "$work/mnt" "$work/mnt/resources"
cat "$work/mnt/resources/config.json"
cmp "$work/mnt/resources/model.safetensors" "$model/model.safetensors"
"$BIN" status
"$BIN" umount "$work/mnt"

# The same through torshpkgd, as a systemd host runs it.
cat > "$work/torshpkgd.json" <<JSON
{"control_socket": "$work/torshpkgd.sock", "lineage_journal": "$work/lineage.jsonl",
 "trusted_keys_dir": "$work/trusted",
 "mounts": [{"package": "$work/demo.torshpkg", "mountpoint": "$work/mnt"}]}
JSON
"$PWD/build/daemon/torshpkgd" --config "$work/torshpkgd.json" 2> "$work/torshpkgd.log" &
daemon=$!
for _ in $(seq 100); do grep -q "ready:" "$work/torshpkgd.log" && break; sleep 0.1; done
head -c 64 "$work/mnt/resources/tokenizer/vocab.txt"; echo
"$BIN" status --socket "$work/torshpkgd.sock"
kill -TERM "$daemon" && wait "$daemon"
"$BIN" lineage log
"$BIN" lineage verify
{ set +x; } 2>/dev/null
echo "demo OK: package $work/demo.torshpkg, extracted into $work/extracted (identical to the source),"
echo "mounted standalone and through torshpkgd; lineage journal $work/lineage.jsonl"

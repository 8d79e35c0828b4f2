#!/usr/bin/env bash
# Remakes tests/vectors/sops-3.11/ with the real sops binary (3.11, as scripts/setup.sh installs it):
# every file of plain/ encrypted to keys/age-a.txt, a few variants of types.yaml and secret.yaml, and
# what `sops decrypt` prints for each (decrypted/). tests/unit/test_vectors.py checks that kvsops
# decrypts every vector to exactly that. A run makes new ciphertexts (random data key, IVs, time):
# commit the result only when the vectors themselves must change, and say why.
#
#   bash tests/vectors/make-sops-vectors.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SOPS=${SOPS:-$ROOT/.tools/bin/sops}
OUT=$HERE/sops-3.11
version=$("$SOPS" --disable-version-check --version | head -1)
case "$version" in "sops 3.11."*) ;; *) echo "make-sops-vectors: need sops 3.11, found: $version" >&2; exit 1 ;; esac

A=$(sed -n 's/^# public key: //p' "$HERE/keys/age-a.txt")
B=$(sed -n 's/^# public key: //p' "$HERE/keys/age-b.txt")
export SOPS_AGE_KEY_FILE= SOPS_AGE_KEY="$(cat "$HERE/keys/age-a.txt" "$HERE/keys/age-b.txt")"
export SOPS_DISABLE_VERSION_CHECK=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT/decrypted"

# vector NAME PLAIN [sops encrypt options...]: sops encrypts PLAIN under NAME's extension in a
# directory of its own, with $CONFIG as its .sops.yaml when set (no .sops.yaml otherwise), and what
# sops decrypts NAME to is kept beside it.
vector() {
    local name=$1 plain=$2
    shift 2
    rm -f "$work/.sops.yaml"
    [ -z "${CONFIG:-}" ] || printf '%s' "$CONFIG" > "$work/.sops.yaml"
    cp "$HERE/plain/$plain" "$work/$name"
    (cd "$work" && "$SOPS" encrypt "$@" "$name") > "$OUT/$name"
    (cd "$OUT" && "$SOPS" decrypt "$name") > "$OUT/decrypted/$name"
    rm "$work/$name"
}

for f in "$HERE"/plain/*; do
    name=${f##*/}
    vector "$name" "$name" --age "$A"
done
vector types.two-recipients.yaml types.yaml --age "$A,$B"
vector types.encrypted-regex.yaml types.yaml --age "$A" --encrypted-regex '^(password|string|int)$'
vector types.unencrypted-suffix.yaml types.yaml --age "$A" --unencrypted-suffix _unencrypted
vector types.unencrypted-regex.yaml types.yaml --age "$A" --unencrypted-regex '^(date|timestamp|float)$'
vector secret.json-out.json secret.yaml --age "$A" --input-type yaml --output-type json
# Options only a .sops.yaml sets: mac_only_encrypted, and key groups with a Shamir threshold (two
# groups, a and b, both needed).
CONFIG="creation_rules:
  - age: $A
    encrypted_regex: ^(data|stringData)\$
    mac_only_encrypted: true
" vector secret.mac-only-encrypted.yaml secret.yaml
CONFIG="creation_rules:
  - shamir_threshold: 2
    key_groups:
      - age: [$A]
      - age: [$B]
" vector types.shamir.yaml types.yaml

echo "make-sops-vectors: $version, $(ls "$OUT" | grep -vc '^decrypted$') vectors in $OUT" >&2

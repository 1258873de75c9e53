#!/usr/bin/env bash
# Run wharf's whole test suite.
#
#   tests/run.sh                 # everything
#   tests/run.sh clients_skopeo  # extra arguments go to the test runner (filters)
#
# On a fresh Debian/Ubuntu machine it first installs what the tests need and
# is missing (apt-get update once, then one apt-get install), builds every
# target once, and runs the suite in parallel with cargo-nextest (falling back
# to `cargo test` when nextest is absent). `.ci/run` calls exactly this.
#
# Tests that need a Docker Engine or containerd print a loud "SKIPPED: ..."
# line and pass when there is none; the summary below says which will skip.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

# ---------------------------------------------------------------------------
# 1. Tools the tests need. One `need` line per tool:
#      need <command that must be on PATH> <apt package that provides it>
#    Add lines here; non-apt installers go in step 2.
APT_MISSING=()
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        APT_MISSING+=("$2")
    fi
}

need skopeo skopeo                    # tests/clients_*.rs push generated images with it
need docker-registry docker-registry  # reference registry (Distribution) for upstream tests
need sha256sum coreutils              # fast hashing of GiB-sized test blobs
need curl curl                        # tests/ops_tls.rs checks HTTP/2 by ALPN with curl --http2
need chromium chromium                # tests/ui_browser.rs drives the dashboard in headless Chromium
need chromedriver chromium-driver     # ... over WebDriver

if [ "${#APT_MISSING[@]}" -gt 0 ]; then
    log "installing: ${APT_MISSING[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${APT_MISSING[@]}"
    # The Debian package starts a registry on :5000 where systemd runs;
    # tests start their own on free ports, and :5000 is wharf's default.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
fi

# ---------------------------------------------------------------------------
# 2. Other installers (pip, cargo install, ...). Keep each idempotent, e.g.
#      python3 -c 'import moto' 2>/dev/null || pip install 'moto[server]'

# moto (AWS Secrets Manager + ECR emulator, with boto3) for tests/creds_aws.rs and creds_redaction.rs
command -v moto_server >/dev/null 2>&1 || pip install 'moto[server]' || python3 -m pip install --break-system-packages 'moto[server]'

# ---------------------------------------------------------------------------
# 3. What the client tests will find.
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust >= 1.89 (https://rustup.rs) and re-run" >&2
    exit 1
fi
# Garage (S3-compatible distributed object store) for the S3 backend's
# tests. Built from crates.io into ~/.cargo/bin once per machine; later runs
# find the binary. Only what the tests use (sqlite metadata, bundled C libs)
# and a quicker optimisation level keep the first build short on 2 cores.
if ! command -v garage >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/garage" ]; then
    log "installing garage 2.5.0 (cargo install, slow the first time)"
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        CARGO_PROFILE_RELEASE_DEBUG=0 \
        cargo install garage --version 2.5.0 --locked --no-default-features --features bundled-libs,sqlite
fi
if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    log "Docker Engine $(docker version --format '{{.Server.Version}}'): Docker client tests will run"
else
    log "WARNING: no Docker Engine answers: tests/clients_docker.rs will print SKIPPED and pass"
fi
if command -v ctr >/dev/null 2>&1 &&
    { [ -S "${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}" ] || [ -S /run/containerd/containerd.sock ] ||
        [ -S /var/run/docker/containerd/containerd.sock ]; }; then
    log "containerd found: ctr client tests will run"
else
    log "WARNING: no ctr/containerd socket: tests/clients_containerd.rs will print SKIPPED and pass"
fi

# ---------------------------------------------------------------------------
# 4. Build once, then run everything in parallel (cargo-nextest runs each
#    test in its own process, as many at a time as there are CPUs).
status=0
if cargo nextest --version >/dev/null 2>&1; then
    log "building the tests"
    cargo nextest run --workspace --no-run
    log "running the test suite (cargo nextest)"
    # (wharf has no doc tests; nextest's summary is the run's last word.)
    cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
    log "cargo-nextest not found; using cargo test"
    cargo build --workspace --all-targets
    log "running the test suite (cargo test)"
    cargo test --workspace --no-fail-fast "$@" || status=$?
fi
if [ "$status" -ne 0 ]; then
    log "FAILED (exit $status)"
else
    log "all tests passed"
fi
exit "$status"

# Shared by infra/scripts/serve, test and bench: the project venv, the moto emulator and the check
# that serve reuses the test build.
# Source it; it defines functions only.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="$ROOT/.venv"
DATA="$ROOT/.data"

# Creates (or refreshes, when its requirements file changed) a project-local venv:
# `ensure_venv` is the moto venv (.venv/ from infra/requirements-dev.txt);
# `ensure_venv DIR FILE` another one (the linters, see infra/scripts/lint).
ensure_venv() {
    local venv="${1:-$VENV}" requirements="${2:-$ROOT/infra/requirements-dev.txt}"
    local want stamp="$venv/.requirements.sha256"
    want=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "Setting up $venv from ${requirements#"$ROOT"/} ..." >&2
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        echo "$want" >"$stamp"
    fi
}

# Static dummy credentials and no instance-metadata lookups: nothing leaves loopback.
use_emulator_credentials() {
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_REGION:-us-east-1}"
    export AWS_EC2_METADATA_DISABLED=true
}

# True when the user has configured real AWS access (credentials, a profile or an endpoint).
aws_configured() {
    [ -n "${AWS_ACCESS_KEY_ID:-}" ] || [ -n "${AWS_PROFILE:-}" ] || [ -n "${AWS_ENDPOINT_URL:-}" ] ||
        [ -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ] ||
        [ -f "${AWS_CONFIG_FILE:-$HOME/.aws/config}" ]
}

# Starts moto on a free loopback port, exports AWS_ENDPOINT_URL, and stops it when the shell exits.
start_moto() {
    mkdir -p "$DATA"
    MOTO_PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$VENV/bin/python" "$ROOT/infra/scripts/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT" >"$DATA/moto.log" 2>&1 &
    MOTO_PID=$!
    trap stop_moto EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if ! "$VENV/bin/python" - "$MOTO_PORT" <<'PY'; then
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/moto-api/"
for _ in range(300):
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
PY
        echo "moto did not start; its log ($DATA/moto.log) says:" >&2
        cat "$DATA/moto.log" >&2
        exit 1
    fi
    export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
    echo "moto (AWS emulator) listening on $AWS_ENDPOINT_URL, log in $DATA/moto.log" >&2
}

stop_moto() {
    if [ -n "${MOTO_PID:-}" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
        MOTO_PID=
    fi
}

# Run by infra/scripts/test after `cargo test --workspace`: fails, naming what and why, when the
# build infra/scripts/serve and bench make (`cargo run --locked -p hostfactory`) would compile
# anything again. `-p hostfactory` resolves features over hostfactory's dependencies only, so any
# feature another member enables on a shared dependency would rebuild it and every crate above it
# (the AWS SDKs: issue #17); the root Cargo.toml declares the union to prevent that.
check_serve_build_fresh() {
    local log rebuilt
    log=$(cd "$ROOT" && cargo build --locked --offline -v -p hostfactory 2>&1 >/dev/null) ||
        { echo "$log" >&2; return 1; }
    rebuilt=$(grep -E '^ +(Compiling|Dirty) ' <<<"$log" || true)
    if [ -n "$rebuilt" ]; then
        echo "build check: infra/scripts/serve would compile again what cargo test just built:" >&2
        echo "$rebuilt" >&2
        echo "Usually a feature another member enables on a shared dependency: declare it in the" >&2
        echo "root Cargo.toml's [workspace.dependencies] (and see shared/Cargo.toml's last block)." >&2
        return 1
    fi
    echo "build check: infra/scripts/serve reuses the test build" >&2
}

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

# Run by infra/scripts/test after `cargo test --workspace`: fails, naming them, when the build
# infra/scripts/serve and bench make (`cargo run --locked -p hostfactory`) compiles a registry crate
# or needs one built otherwise than the test build did. `-p hostfactory` resolves features over
# hostfactory's dependencies only, so a feature another member enables on a shared dependency
# would rebuild it and every crate above it (the AWS SDKs: issue #17); the root Cargo.toml declares
# the union to prevent that. Comparing the artifacts' file names (cargo hashes the features into
# them) catches this even when an earlier build left both variants in target/.
check_serve_build_fresh() {
    (cd "$ROOT" && "$VENV/bin/python" - <<'PY')
import json, subprocess, sys

def registry_artifacts(*command):
    """Each registry package's artifact files in this cargo build, and the packages it compiled."""
    run = subprocess.run(["cargo", *command, "--locked", "--offline", "--message-format=json"],
                         capture_output=True, text=True)
    if run.returncode:
        sys.exit(run.stderr)
    files, compiled = {}, set()
    for message in map(json.loads, run.stdout.splitlines()):
        package = message.get("package_id", "")
        if message.get("reason") == "compiler-artifact" and package.startswith(("registry+", "sparse+")):
            files.setdefault(package, set()).update(message["filenames"])
            if not message["fresh"]:
                compiled.add(package)
    return files, compiled

tested, _ = registry_artifacts("test", "--workspace", "--no-run")
served, compiled = registry_artifacts("build", "-p", "hostfactory")
differ = sorted(p.split("#")[-1] for p, f in served.items() if p in compiled or not f <= tested.get(p, set()))
if differ:
    sys.exit("build check: infra/scripts/serve builds these crates a second time, other than the test build:\n  "
             + " ".join(differ) + "\nUsually a feature another member enables on a shared dependency: "
             "declare it in the root Cargo.toml's [workspace.dependencies] (see the block at its end).")
print(f"build check: infra/scripts/serve reuses the test build ({len(served)} registry crates)", file=sys.stderr)
PY
}

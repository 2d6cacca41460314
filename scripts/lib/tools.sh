# shellcheck shell=bash
# Tools of primer's scripts. Python-packaged ones each in their own venv (the SAM CLI
# downgrades boto3 for anything installed next to it); a venv is re-created when it is
# missing, broken or of another version. npm packages from committed lock files. Paths are
# relative to the repository root (the scripts cd there); PRIMER_SAM_VENV,
# PRIMER_CARGO_LAMBDA_VENV, PRIMER_SCHEMATHESIS_VENV, PRIMER_PLAYWRIGHT_VENV,
# PRIMER_OPENAPI_CLIENTS_VENV and PRIMER_CHECKOV_VENV move the venvs (CI keeps them under
# /var/tmp). Cargo-installed tools go under their own root: PRIMER_SQLX_CLI_DIR moves
# sqlx-cli's.
#
#   ensure_sam             the AWS SAM CLI in $sam_venv
#   ensure_cargo_lambda    cargo-lambda (and the Zig it cross-compiles with) in
#                          $cargo_lambda_venv; `cargo lambda` needs its bin on PATH
#   ensure_schemathesis    schemathesis (`st`) in $schemathesis_venv
#   ensure_chromium        Debian's chromium at $chromium (apt-get as root when missing)
#   ensure_playwright      Playwright for Python in $playwright_venv; it drives $chromium and
#                          never downloads a browser of its own
#   ensure_openapi_clients openapi-python-client (and jsonschema) in $openapi_clients_venv,
#                          openapi-typescript and TypeScript in tests/clients/node_modules
#   ensure_npm DIR         `npm ci` in DIR when its node_modules is missing or from another lock
#   ensure_checkov         checkov (and the PyYAML scripts/lib/connection_budget.py reads
#                          template.yaml with) in $checkov_venv
#   ensure_sqlx_cli        sqlx-cli (`sqlx`, `cargo sqlx`; PostgreSQL and rustls only) in
#                          $sqlx_cli_dir/bin, by `cargo install --locked` (a few minutes, once)
#   sam_run ARGS...        runs `sam ARGS...` offline: no telemetry, region us-east-1, fake
#                          credentials
#
# Sets no shell options (see pg.sh). Source it after common.sh.

SAM_CLI_VERSION=1.170.0
CARGO_LAMBDA_VERSION=1.9.2
# Zig 0.16 broke cross-builds of aws-lc-sys and ring.
ZIGLANG_BELOW=0.16
SCHEMATHESIS_VERSION=4.32.5
PLAYWRIGHT_VERSION=1.65.2
OPENAPI_PYTHON_CLIENT_VERSION=0.29.1
JSONSCHEMA_VERSION=4.26.0
CHECKOV_VERSION=3.3.30
# The newest sqlx-cli on crates.io; it reads and writes the offline metadata (.sqlx/) of the
# workspace's sqlx 0.9.1 (the format is the 0.9 series').
SQLX_CLI_VERSION=0.9.0
sam_venv=${PRIMER_SAM_VENV:-.local/venv-sam}
cargo_lambda_venv=${PRIMER_CARGO_LAMBDA_VENV:-.local/venv-cargo-lambda}
schemathesis_venv=${PRIMER_SCHEMATHESIS_VENV:-.local/venv-schemathesis}
playwright_venv=${PRIMER_PLAYWRIGHT_VENV:-.local/venv-playwright}
openapi_clients_venv=${PRIMER_OPENAPI_CLIENTS_VENV:-.local/venv-openapi-clients}
checkov_venv=${PRIMER_CHECKOV_VENV:-.local/venv-checkov}
sqlx_cli_dir=${PRIMER_SQLX_CLI_DIR:-.local/sqlx-cli}
chromium=${PRIMER_CHROMIUM:-}

# _tools_make_venv DIR PIP_REQUIREMENT...: a new venv at DIR with those packages.
_tools_make_venv() {
  local dir=$1
  shift
  # Explicit `|| return`: set -e does not apply inside a function called with `||`.
  rm -rf "$dir" || return 1
  mkdir -p "$(dirname "$dir")" || return 1
  python3 -m venv "$dir" || return 1
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore \
    "$dir/bin/pip" install -q "$@" || return 1
}

ensure_sam() {
  local have
  have=$("$sam_venv/bin/sam" --version 2>/dev/null) || have=""
  [[ $have == *"version $SAM_CLI_VERSION" ]] && return 0
  echo "installing aws-sam-cli $SAM_CLI_VERSION into $sam_venv (takes a minute or two)"
  _tools_make_venv "$sam_venv" "aws-sam-cli==$SAM_CLI_VERSION" || return 1
  "$sam_venv/bin/sam" --version >/dev/null
}

ensure_cargo_lambda() {
  local have cl zig
  have=$("$cargo_lambda_venv/bin/python" -c 'import importlib.metadata as m
print(m.version("cargo-lambda"), m.version("ziglang"))' 2>/dev/null) || have=""
  cl=${have% *} zig=${have#* }
  if [[ -n $have && $cl == "$CARGO_LAMBDA_VERSION" && -x $cargo_lambda_venv/bin/cargo-lambda ]] &&
    ! version_at_least "$zig" "$ZIGLANG_BELOW"; then
    return 0
  fi
  echo "installing cargo-lambda $CARGO_LAMBDA_VERSION (and ziglang<$ZIGLANG_BELOW) into $cargo_lambda_venv"
  _tools_make_venv "$cargo_lambda_venv" "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang<$ZIGLANG_BELOW" || return 1
  PATH="$cargo_lambda_venv/bin:$PATH" cargo lambda --version >/dev/null
}

ensure_schemathesis() {
  local have
  have=$("$schemathesis_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' \
    2>/dev/null) || have=""
  [[ $have == "$SCHEMATHESIS_VERSION" && -x $schemathesis_venv/bin/st ]] && return 0
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $schemathesis_venv (takes a minute)"
  _tools_make_venv "$schemathesis_venv" "schemathesis==$SCHEMATHESIS_VERSION" || return 1
  "$schemathesis_venv/bin/st" --version >/dev/null
}

# Sets chromium to a Chromium or Chrome: PRIMER_CHROMIUM, one on PATH, macOS's applications;
# installs Debian's chromium where packages can be installed. Returns 2 when there is none and
# none can be installed here (the caller skips the browser test, saying so).
ensure_chromium() {
  local candidate
  [[ -n $chromium && -x $chromium ]] && return 0
  for candidate in "$(command -v chromium 2>/dev/null)" "$(command -v chromium-browser 2>/dev/null)" \
    "$(command -v google-chrome 2>/dev/null)" \
    "/Applications/Chromium.app/Contents/MacOS/Chromium" \
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"; do
    if [[ -n $candidate && -x $candidate ]]; then
      chromium=$candidate
      return 0
    fi
  done
  if ! can_install_packages; then
    echo "no Chromium or Chrome found: $(install_hint chromium), or set PRIMER_CHROMIUM" >&2
    return 2
  fi
  echo "installing Debian's chromium (apt-get)"
  # Another apt-get may hold the lock for a while (unattended upgrades): wait for it.
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq || return 1
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium || return 1
  chromium=/usr/bin/chromium
  [[ -x $chromium ]]
}

ensure_playwright() {
  local have
  have=$("$playwright_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("playwright"))' \
    2>/dev/null) || have=""
  [[ $have == "$PLAYWRIGHT_VERSION" ]] && return 0
  echo "installing playwright $PLAYWRIGHT_VERSION into $playwright_venv (the Python package only: no browser)"
  _tools_make_venv "$playwright_venv" "playwright==$PLAYWRIGHT_VERSION" || return 1
  "$playwright_venv/bin/python" -c 'import playwright.sync_api' || return 1
}

ensure_npm() {
  local dir=$1 want have stamp="$1/node_modules/.primer-lock-sha256"
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm is missing: $(install_hint node)" >&2
    return 1
  fi
  want=$(sha256_of "$dir/package-lock.json") || return 1
  have=$(cat "$stamp" 2>/dev/null) || have=""
  [[ $have == "$want" ]] && return 0
  echo "installing $dir/node_modules (npm ci)"
  npm ci --no-audit --no-fund --prefix "$dir" || return 1
  echo "$want" >"$stamp"
}

ensure_openapi_clients() {
  local have
  have=$("$openapi_clients_venv/bin/python" -c 'import importlib.metadata as m
print(m.version("openapi-python-client"), m.version("jsonschema"))' 2>/dev/null) || have=""
  if [[ $have != "$OPENAPI_PYTHON_CLIENT_VERSION $JSONSCHEMA_VERSION" ]]; then
    echo "installing openapi-python-client $OPENAPI_PYTHON_CLIENT_VERSION into $openapi_clients_venv"
    _tools_make_venv "$openapi_clients_venv" "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION" \
      "jsonschema==$JSONSCHEMA_VERSION" || return 1
  fi
  ensure_npm tests/clients
}

ensure_checkov() {
  local have
  have=$("$checkov_venv/bin/checkov" --version 2>/dev/null) || have=""
  [[ $have == "$CHECKOV_VERSION" ]] && "$checkov_venv/bin/python" -c 'import yaml' 2>/dev/null && return 0
  echo "installing checkov $CHECKOV_VERSION into $checkov_venv (takes a minute or two)"
  _tools_make_venv "$checkov_venv" "checkov==$CHECKOV_VERSION" || return 1
  "$checkov_venv/bin/checkov" --version >/dev/null
}

ensure_sqlx_cli() {
  local have
  have=$("$sqlx_cli_dir/bin/sqlx" --version 2>/dev/null) || have=""
  [[ $have == "sqlx-cli $SQLX_CLI_VERSION" && -x $sqlx_cli_dir/bin/cargo-sqlx ]] && return 0
  echo "installing sqlx-cli $SQLX_CLI_VERSION into $sqlx_cli_dir (cargo install: a few minutes)"
  # Its own scratch build directory, not the workspace's CARGO_TARGET_DIR: its release build
  # shares nothing with the workspace's.
  env -u CARGO_TARGET_DIR cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --locked \
    --no-default-features --features rustls,postgres --root "$sqlx_cli_dir" --force || return 1
  "$sqlx_cli_dir/bin/sqlx" --version >/dev/null
}

sam_run() {
  env -u AWS_SESSION_TOKEN -u AWS_PROFILE -u AWS_DEFAULT_PROFILE SAM_CLI_TELEMETRY=0 \
    AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    "$sam_venv/bin/sam" "$@"
}

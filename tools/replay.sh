# The replay gateway for shell scripts (tools/demo.sh, tools/check_plain_install.sh): source this file
# from the repository's root with PY set to the dev venv's python (.venv/bin/python), which runs the test
# tools tools/generate.py and tools/gateway.py. The caller's trap stops the gateway: kill $GATEWAY_PID.

# replay_key FILE: export DATABENTO_API_KEY, a throwaway key for the local gateway kept in FILE (made
# the first time, mode 0600); never printed, never on a command line.
replay_key() {
    [ -f "$1" ] || (umask 077; echo "db-demo$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" > "$1")
    export DATABENTO_API_KEY
    DATABENTO_API_KEY=$(cat "$1")
}

# replay_gateway DATA DIR: serve DATA (tools/generate.py's output) on a free port of 127.0.0.1, with the
# certificate, port file and log in DIR; sets GATEWAY_PID and exports DATABENTO_GATEWAY and
# REQUESTS_CA_BUNDLE for hist. Needs DATABENTO_API_KEY (replay_key).
replay_gateway() {
    local data=$1 dir=$2
    rm -f "$dir/gateway.port"
    "$PY" tools/gateway.py --data "$data" --port 0 --cert-dir "$dir/certs" \
        --port-file "$dir/gateway.port" > "$dir/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    for _ in $(seq 300); do [ -s "$dir/gateway.port" ] && break; sleep 0.1; done
    [ -s "$dir/gateway.port" ] || { cat "$dir/gateway.log"; echo "gateway did not start" >&2; return 1; }
    export DATABENTO_GATEWAY REQUESTS_CA_BUNDLE=$dir/certs/cert.pem
    DATABENTO_GATEWAY=127.0.0.1:$(cat "$dir/gateway.port")
}

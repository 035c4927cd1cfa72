#!/usr/bin/env bash
# TimescaleDB for hist's demo and tests: install the extension into the machine's PostgreSQL 15 (built
# from Debian's own source package), and start/stop a throwaway cluster.
#
#   tools/timescaledb.sh install            # no-op when timescaledb is already installed
#   tools/timescaledb.sh start DIR PORT     # initdb (first time) + pg_ctl start; prints the DSN
#                                           # (another free port when PORT is taken)
#   tools/timescaledb.sh stop DIR           # pg_ctl stop
#
# The machine's apt configuration is never touched: the trixie deb-src list, the package lists and the
# cache live under $HIST_APT_DIR (default /tmp/hist-apt). The mirror is taken from the machine's own
# Debian sources so nothing here names a host.
set -euo pipefail

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
APT_DIR=${HIST_APT_DIR:-/tmp/hist-apt}

die() { echo "timescaledb.sh: $*" >&2; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

installed() {
    [ -f "$("$PG_BIN/pg_config" --sharedir)/extension/timescaledb.control" ] 2>/dev/null
}

debian_mirror() {
    local uri
    uri=$(grep -hoE '^URIs: *[^ ]+/debian$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
    [ -n "$uri" ] || uri=$(grep -hoE '^deb +[^ ]+/debian ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt sources"
    echo "$uri"
}

install() {
    if installed; then echo "timescaledb: already installed"; return 0; fi
    as_root apt-get update -qq >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "postgresql-server-dev-$PG_MAJOR" cmake build-essential libssl-dev dpkg-dev >/dev/null
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial" "$APT_DIR/src"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie main" \
        > "$APT_DIR/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=-"
                -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache::Archives=$APT_DIR/archives"
                -o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" update -qq
    (cd "$APT_DIR/src" && rm -rf timescaledb-* && apt-get "${opts[@]}" source --download-only -qq timescaledb)
    local dsc; dsc=$(ls "$APT_DIR"/src/timescaledb_*.dsc | head -n1)
    (cd "$APT_DIR/src" && dpkg-source --no-check -x "$dsc" >/dev/null)
    local srcdir; srcdir=$(find "$APT_DIR/src" -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)
    # the source is no git checkout: GIT_EXECUTABLE=false keeps the build's version probe from printing
    # "fatal: not a git repository"
    (cd "$srcdir" && ./bootstrap -DPG_CONFIG="$PG_BIN/pg_config" -DGIT_EXECUTABLE=/bin/false -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF \
        -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DUSE_TELEMETRY=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null \
        && make -C build -j"$(nproc)" >/dev/null && as_root make -C build install >/dev/null)
    installed || die "build finished but timescaledb.control is missing"
    echo "timescaledb: installed from $(basename "$dsc")"
}

# Run a PostgreSQL binary as the cluster's owner: initdb refuses root, so root hands over to `postgres`.
pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# As root the cluster runs as `postgres`, which may not be able to reach DIR (a 0700 temp folder, a
# home directory); the data then lives in /var/tmp/hist-pg/<hash of DIR> instead, found again by stop.
data_dir() {
    local dir; dir=$(realpath -m "$1")
    if [ "$(id -u)" -eq 0 ]; then
        mkdir -p "$(dirname "$dir")"
        if ! runuser -u postgres -- test -x "$(dirname "$dir")" 2>/dev/null; then
            dir=/var/tmp/hist-pg/$(printf '%s' "$dir" | sha1sum | cut -c1-16)
            mkdir -p /var/tmp/hist-pg && chmod 755 /var/tmp/hist-pg
        fi
    fi
    echo "$dir"
}

start() {
    local dir port=${2:?usage: start DIR PORT}
    dir=$(data_dir "${1:?usage: start DIR PORT}")
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
        pg "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        cat >> "$dir/postgresql.conf" <<CONF
shared_preload_libraries = 'timescaledb'
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
timescaledb.telemetry_level = off
max_wal_size = 4GB
synchronous_commit = off
CONF
    fi
    if pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        port=$(sed -n 4p "$dir/postmaster.pid")  # already running: keep its port
    else
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            local busy=$port
            port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
            echo "timescaledb.sh: port $busy is in use; using $port" >&2
        fi
        pg "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null \
            || die "cluster in $dir did not start: see $dir/server.log"
    fi
    pg "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAtc \
        "SELECT 1 FROM pg_database WHERE datname='hist'" | grep -q 1 \
        || pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres hist
    echo "postgresql://postgres@127.0.0.1:$port/hist"
}

stop() {
    local dir
    dir=$(data_dir "${1:?usage: stop DIR}")
    [ -f "$dir/postmaster.pid" ] || return 0
    pg "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
}

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) die "usage: $0 install | start DIR PORT | stop DIR" ;;
esac

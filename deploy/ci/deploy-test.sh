#!/usr/bin/env bash
# make deploy-test: build the image and run the compose stack for real.
#
#  1. installs docker.io, debootstrap and docker-compose when missing (root);
#  2. starts dockerd (no bridge, no iptables, vfs) when none answers, and
#     stops it again at the end;
#  3. makes the base image from Debian packages (debootstrap + docker import)
#     unless it exists already (kept between runs: EMODIST_DEPLOY_BASE);
#  4. builds the emodist image (deploy/docker/Dockerfile, model built in)
#     and a moto S3 server image;
#  5. brings up deploy/compose/docker-compose.yml (objectstore, seed,
#     scheduler, 2 workers) on 127.0.0.1 with a derived override
#     (deploy/ci/stack.py), seeds a 24-track Emotify subset into S3 and runs
#     the compose `job` (emodist run) in its container;
#  6. checks from the host that the store on S3 is complete and the report
#     exists; runs again into a fresh store, `docker kill`s a worker in the
#     middle, and checks that store is complete and equal to the first;
#  7. removes every container, volume and image it made (not the base image),
#     also on failure.
#
# Environment: EMODIST_EMOTIFY_ROOT (Emotify folder; default
# ../shared/data/emotify), EMODIST_DEPLOY_TRACKS_PER_GENRE (6),
# EMODIST_DEPLOY_BASE (emodist-deploy-base:bookworm), EMODIST_DEBIAN_MIRROR
# (default: the host's apt mirror), PY (host Python with the project installed).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

PY=${PY:-$repo/.venv/bin/python}
VERSION=$(sed -n 's/__version__ = "\(.*\)"/\1/p' emodist/_version.py)
MOTO_VERSION=$(sed -n 's/^moto==//p' constraints.txt)
BASE_IMAGE=${EMODIST_DEPLOY_BASE:-emodist-deploy-base:bookworm}
PROJECT=emodist-deploy-test
IMAGE=$PROJECT/emodist:$VERSION
MOTO_IMAGE=$PROJECT/moto:${MOTO_VERSION:-5}
DATA_SRC=${EMODIST_EMOTIFY_ROOT:-$repo/../shared/data/emotify}
PER_GENRE=${EMODIST_DEPLOY_TRACKS_PER_GENRE:-6}
BUCKET=emodist

t0=$(date +%s)
log() { printf '[deploy-test %4ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
die() { echo "deploy-test: $*" >&2; exit 1; }

[ -x "$PY" ] || die "no Python at $PY (run make install first, or set PY)"
[ -d "$DATA_SRC/emotifymusic" ] || die "no Emotify folder at $DATA_SRC (set EMODIST_EMOTIFY_ROOT)"

# --- 1. tools ---------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "needs root to install ${missing[*]}"
    log "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
# The Debian client matches the Debian daemon (a newer client without buildx
# cannot use BuildKit).
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
if command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose --compatibility)   # v1: deploy.* -> replicas and limits
else
    COMPOSE=("$DOCKER" compose)
fi
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1

work=$(mktemp -d /tmp/emodist-deploy-test.XXXXXX)
chmod 755 "$work"
dockerd_pid=""
compose_dir="$work/compose"

compose() { (cd "$compose_dir" && "${COMPOSE[@]}" -p "$PROJECT" "$@"); }

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "${DOCKER_UP:-}" ]; then
        log "tearing down"
        if [ -f "$compose_dir/docker-compose.override.yml" ]; then
            compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
        fi
        ids=$("$DOCKER" ps -aq --filter "label=com.docker.compose.project=$PROJECT")
        [ -n "$ids" ] && "$DOCKER" rm -f $ids >/dev/null 2>&1
        vols=$("$DOCKER" volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
        [ -n "$vols" ] && "$DOCKER" volume rm -f $vols >/dev/null 2>&1
        "$DOCKER" rmi -f "$IMAGE" "$MOTO_IMAGE" >/dev/null 2>&1
        "$DOCKER" builder prune -af >/dev/null 2>&1
        "$DOCKER" image prune -f >/dev/null 2>&1
    fi
    if [ -n "$dockerd_pid" ]; then
        log "stopping the dockerd this run started (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    fi
    rm -rf "$work"
    if [ "$rc" = 0 ]; then log "passed in $(( $(date +%s) - t0 )) s"; else log "FAILED (status $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. dockerd ------------------------------------------------------------
if ! "$DOCKER" info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "dockerd is not running and starting it needs root"
    log "starting dockerd"
    dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=vfs \
        --pidfile "$work/dockerd.pid" >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do
        "$DOCKER" info >/dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.5
    done
    if ! "$DOCKER" info >/dev/null 2>&1; then
        why=$(grep -iE 'level=(fatal|error)|failed' "$work/dockerd.log" | tail -1 | cut -c1-200)
        kill "$dockerd_pid" 2>/dev/null
        dockerd_pid=""
        die "dockerd could not start: ${why:-no answer on its socket within 30 s}"
    fi
fi
DOCKER_UP=1
# containers and volumes an interrupted earlier run left behind (its teardown never ran)
stale=$( { "$DOCKER" ps -aq --filter "label=com.docker.compose.project=$PROJECT"
           "$DOCKER" ps -aq --filter "name=$PROJECT"; } | sort -u)
if [ -n "$stale" ]; then
    log "removing $(echo "$stale" | wc -l) containers left by an interrupted run"
    "$DOCKER" rm -f $stale >/dev/null
fi
stale=$("$DOCKER" volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
[ -z "$stale" ] || "$DOCKER" volume rm -f $stale >/dev/null

# --- 3. base image ---------------------------------------------------------
if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE exists"
else
    # the host's Debian mirror (one-line or deb822 sources), else deb.debian.org
    mirror=${EMODIST_DEBIAN_MIRROR:-$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true) \
        | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ' || true)}
    mirror=${mirror:-http://deb.debian.org/debian}
    [ "$(id -u)" = 0 ] || die "making the base image (debootstrap) needs root"
    log "making $BASE_IMAGE: debootstrap bookworm from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -5 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # the host's CA bundle: pip in the build reaches PyPI the way the host does
    [ -f /etc/ssl/certs/ca-certificates.crt ] \
        && cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    tar -C "$work/rootfs" -c . | "$DOCKER" import --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$work/rootfs"
fi
"$DOCKER" run --rm --network host "$BASE_IMAGE" python3 -c \
    'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || die "$BASE_IMAGE has no CPython 3.11"

# --- 4. images -------------------------------------------------------------
log "building $IMAGE and $MOTO_IMAGE"
mkdir -p "$work/moto-context"
cp constraints.txt "$work/moto-context/"
"$DOCKER" build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f deploy/ci/moto.Dockerfile -t "$MOTO_IMAGE" "$work/moto-context" >"$work/build-moto.log" 2>&1 &
moto_build=$!
tb=$(date +%s)
"$DOCKER" build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f deploy/docker/Dockerfile -t "$IMAGE" . >"$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log" >&2; die "docker build of $IMAGE failed"; }
log "built $IMAGE in $(( $(date +%s) - tb )) s"
wait "$moto_build" || { tail -30 "$work/build-moto.log" >&2; die "docker build of $MOTO_IMAGE failed"; }
got=$("$DOCKER" run --rm --network host "$IMAGE" emodist --version)
log "image says: $got"
case "$got" in *"$VERSION"*) ;; *) die "the image reports '$got', not $VERSION" ;; esac

# --- 5. the stack ----------------------------------------------------------
n=$("$PY" deploy/ci/stack.py subset "$DATA_SRC" "$work/data" "$PER_GENRE")
log "dataset: $n tracks (data.csv + audio linked into $work/data)"
mapfile -t ports < <("$PY" deploy/ci/stack.py ports 3)
"$PY" deploy/ci/stack.py compose "$compose_dir" --image "$IMAGE" --moto-image "$MOTO_IMAGE" \
    --s3-port "${ports[0]}" --scheduler-port "${ports[1]}" --dashboard-port "${ports[2]}" \
    --data "$work/data"
log "ports: S3 ${ports[0]}, scheduler ${ports[1]}, dashboard ${ports[2]} (127.0.0.1)"
compose config -q
ts=$(date +%s)
compose up -d --scale worker=2 objectstore scheduler worker 2>&1 | sed 's/^/  /'
workers=$(compose ps -q worker | wc -l)
[ "$workers" = 2 ] || die "expected 2 worker containers, found $workers"
log "stack up in $(( $(date +%s) - ts )) s"
compose run --rm -T seed 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || die "the seed service failed"

# --- 6a. run 1: the compose job's command, the report to S3 too ---------------
# (the quick presets keep CI short)
store1="s3://$BUCKET/features.zarr"
report1="s3://$BUCKET/report-1"
mapfile -t argv1 < <("$PY" deploy/ci/stack.py job-argv "$compose_dir" --store "$store1" \
    --out "$report1" --classifiers quick)
[ "${#argv1[@]}" -gt 3 ] || die "could not make the job command of run 1"
tr=$(date +%s)
log "run 1: ${argv1[*]}"
compose run -T --name "$PROJECT-job-1" job "${argv1[@]}" >"$work/job-1.log" 2>&1 \
    || { tail -40 "$work/job-1.log" >&2; die "run 1 failed"; }
run1=$(( $(date +%s) - tr ))
tail -3 "$work/job-1.log" | sed 's/^/  /'
"$PY" deploy/ci/stack.py report "$report1" --compose "$compose_dir" || die "run 1 left no report on S3"
"$PY" deploy/ci/stack.py check "$compose_dir" "$store1" --tracks "$n" || die "run 1's store is not whole"
log "run 1 passed in $run1 s"

# --- 6b. run 2: fresh store, a worker killed in the middle -----------------
store2="s3://$BUCKET/features-killed.zarr"
mapfile -t argv < <("$PY" deploy/ci/stack.py job-argv "$compose_dir" --store "$store2" \
    --out /srv/emodist/results/run-2 --chunk-segments 8 --classifiers quick)
[ "${#argv[@]}" -gt 3 ] || die "could not make the job command of run 2"
log "run 2: ${argv[*]}"
tr=$(date +%s)
compose run -T --name "$PROJECT-job-2" job "${argv[@]}" >"$work/job-2.log" 2>&1 &
job2=$!
# sed reads all of compose's output: with head, a second line written after head
# exits kills compose with SIGPIPE, and pipefail + set -e end the test (status 141)
victim=$(compose ps -q worker | sed -n 1p)
[ -n "$victim" ] || die "no worker container to kill in run 2"
killed=""
for _ in $(seq 600); do
    kill -0 "$job2" 2>/dev/null || break
    read -r done total < <("$PY" deploy/ci/stack.py progress "$compose_dir" "$store2")
    if [ "$total" -gt 0 ] && [ "$done" -ge 8 ] && [ "$done" -lt "$total" ]; then
        "$DOCKER" kill "$victim" >/dev/null
        killed="$done/$total"
        log "killed worker ${victim:0:12} at $killed segments"
        break
    fi
    sleep 0.5
done
wait "$job2" || { tail -40 "$work/job-2.log" >&2; die "run 2 failed after the worker was killed"; }
run2=$(( $(date +%s) - tr ))
[ -n "$killed" ] || { tail -20 "$work/job-2.log" >&2; die "run 2 ended before a worker could be killed"; }
state=$("$DOCKER" inspect -f '{{.State.Running}} {{.State.ExitCode}}' "$victim")
[ "$state" = "false 137" ] || die "the killed worker is '$state', expected 'false 137'"
tail -3 "$work/job-2.log" | sed 's/^/  /'
"$DOCKER" cp "$PROJECT-job-2:/srv/emodist/results/run-2" "$work/report-2" >/dev/null
"$PY" deploy/ci/stack.py report "$work/report-2"
"$PY" deploy/ci/stack.py check "$compose_dir" "$store2" --tracks "$n" --same-as "$store1"
log "run 2 passed in $run2 s (worker killed at $killed segments)"
log "timings: run 1 ${run1} s, run 2 ${run2} s"

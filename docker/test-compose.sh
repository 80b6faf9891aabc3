#!/usr/bin/env bash
# Builds and runs docker/compose.yaml for real on this machine and checks it as a user would
# (`npm run test:compose`; .ci/run runs it too). No registry is needed:
#   1. installs what is missing from Debian (docker.io, docker-compose 1.29, debootstrap);
#   2. starts dockerd if none is running (stopped again at the end);
#   3. builds local base images once, cached by tag (docker/local-images/): a Debian bookworm base
#      from `debootstrap --variant=minbase` with the host's CA bundle, node:20-bookworm-slim from
#      this machine's node and npm, and stand-ins for redis:7-alpine, postgres:16-alpine and
#      prom/prometheus:v2.53.0 from Debian's packages. An image of that tag that is not a local
#      stand-in (a real one, pulled) is used as it is. Grafana has no Debian package: it is left
#      out of this run (docker/compose.test.yaml);
#   4. builds Switchyard's image from docker/Dockerfile, `docker-compose up -d`, and checks: the
#      register service hands each agent its own token (0400, the image's user), each region's
#      agent reports to its region's scheduler (switchyard_scheduler_nodes{state="fresh"} 1 on
#      each, no_agent 0), the openai SDK gets answers from both regions' gateways including a
#      background response completed by each region's worker, the regions stand alone (each
#      gateway sees its own node fresh and not the other's; x-switchyard-region forwards to the
#      other region's gateway; a response kept in eu-west is read and continued through eu-north's;
#      each region's Redis holds only its own node's ledger and live state and its own responses),
#      Prometheus scrapes every target, every healthcheck goes healthy, volumes are writable by
#      their users; `up -d` a second time and a restart of both schedulers keep the agents
#      connected with the same tokens; `down -v` leaves nothing behind.
# Exit status: 0 passed, 77 skipped (Docker could not be installed or started: the reason is
# printed), anything else failed. KEEP_STACK=1 leaves the stack running (and dockerd) to look at.
# Ports published on 127.0.0.1 only: 8080, 8081 (gateways) and 9090 (Prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT="${COMPOSE_PROJECT_NAME:-switchyard-test}"
COMPOSE=(docker-compose --ansi never -p "$PROJECT" -f docker/compose.yaml -f docker/compose.test.yaml)
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
LOG_DIR="${LOG_DIR:-/tmp/switchyard-compose-test}"
DOCKERD_LOG="$LOG_DIR/dockerd.log"
SKIP=77
mkdir -p "$LOG_DIR"
WORK="$(mktemp -d /tmp/switchyard-compose-build.XXXXXX)"

# Debian's docker client matches its daemon (a newer client elsewhere on the PATH may not).
DOCKER_BIN=/usr/bin/docker
docker() { "$DOCKER_BIN" "$@"; }
compose() { "${COMPOSE[@]}" "$@"; }

# ---- phases and their timings ----
PHASES=()
PHASE=''
PHASE_START=0
RUN_START=$SECONDS
phase() {
  end_phase
  PHASE="$1"
  PHASE_START=$SECONDS
  printf '\n== %s\n' "$PHASE"
}
end_phase() {
  if [ -n "$PHASE" ]; then PHASES+=("$(printf '%-44s %4d s' "$PHASE" $((SECONDS - PHASE_START)))"); fi
  PHASE=''
}
say() { printf '   %s\n' "$*"; }
fail() {
  printf 'FAIL %s\n' "$*" >&2
  exit 1
}
skip() {
  printf 'SKIP the compose test: %s\n' "$*" >&2
  [ -s "$DOCKERD_LOG" ] && { echo '--- last lines of the dockerd log:' >&2; tail -n 20 "$DOCKERD_LOG" >&2; }
  exit "$SKIP"
}

STARTED_DOCKERD=''
STACK_UP=''
on_exit() {
  local status=$?
  end_phase
  if [ -n "$STACK_UP" ]; then
    if [ "$status" -ne 0 ]; then
      echo '--- compose ps and the last log lines of every service:' >&2
      compose ps >&2 || true
      compose logs --no-color --tail 30 >&2 || true
    fi
    if [ "${KEEP_STACK:-}" = 1 ]; then
      echo "KEEP_STACK=1: the stack (project $PROJECT) and dockerd are left running"
      STARTED_DOCKERD=''
    else
      compose down -v --remove-orphans >/dev/null 2>&1 || true
    fi
  fi
  if [ -n "$STARTED_DOCKERD" ]; then
    kill -TERM "$STARTED_DOCKERD" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 0.5; done
    echo "dockerd (pid $STARTED_DOCKERD, started by this script) stopped"
  fi
  rm -rf "$WORK"
  if [ "${#PHASES[@]}" -gt 0 ]; then
    printf '\n== timings\n'
    printf '   %s\n' "${PHASES[@]}"
    printf '   %-44s %4d s\n' 'total' $((SECONDS - RUN_START))
  fi
  [ "$status" -eq 0 ] && printf '\nPASS the compose stack\n'
  exit "$status"
}
trap on_exit EXIT

# Polls a condition (a container state, a metric: external systems with no event to await).
eventually() {
  local what="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  DETAIL=''
  until "$@"; do
    [ $SECONDS -ge $deadline ] && fail "$what (waited $timeout s)${DETAIL:+: $DETAIL}"
    sleep 1
  done
}

# ---- 1. packages ----
phase 'packages (docker.io, docker-compose, debootstrap)'
missing=()
[ -x /usr/bin/docker ] && command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  [ "$(id -u)" = 0 ] || skip "${missing[*]} missing and not root to install them"
  apt-get update -qq >"$LOG_DIR/apt.log" 2>&1 || skip "apt-get update failed (see $LOG_DIR/apt.log)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1 ||
    skip "apt-get install ${missing[*]} failed (see $LOG_DIR/apt.log)"
fi
say "$(docker --version); $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"

# ---- 2. dockerd ----
phase 'dockerd'
if docker info >/dev/null 2>&1; then
  say 'dockerd already running: using it (left running at the end)'
else
  say "starting dockerd (log: $DOCKERD_LOG)"
  dockerd >"$DOCKERD_LOG" 2>&1 &
  STARTED_DOCKERD=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$STARTED_DOCKERD" 2>/dev/null || { STARTED_DOCKERD=''; skip 'dockerd exited at start'; }
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || skip 'dockerd did not answer within 30 s'
fi
say "$(docker info --format 'server {{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupVersion}}')"
df -h /var/lib/docker 2>/dev/null | tail -n 1 | awk '{ print "   disk: " $4 " free on " $6 }'
# A container must reach the network for builds (npm ci, apt-get) and each other by name.
[ -n "$(docker network ls -q --filter name=^bridge$)" ] || skip 'dockerd has no bridge network'

# ---- 3. local base images, cached by tag and recipe ----
LABEL=org.switchyard.stand-in
# Which recipe made an image: its stand-in label (empty: not ours; none: no such image).
image_recipe() { docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || echo none; }
recipe_of() { cat "$@" | sha256sum | cut -c1-16; }
# ensure_image TAG KEY BUILD...: runs BUILD unless TAG was made from KEY already, or is a real image.
ensure_image() {
  local tag="$1" key="$2"
  shift 2
  local have
  have="$(image_recipe "$tag")"
  if [ "$have" = "$key" ]; then say "$tag: cached"; return; fi
  if [ "$have" != none ] && [ -z "$have" ]; then say "$tag: not a local stand-in (a pulled image): used as it is"; return; fi
  say "$tag: building"
  "$@" || fail "building $tag"
}

build_debian() {
  local rootfs="$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$LOG_DIR/debootstrap.log" 2>&1 ||
    { tail -n 20 "$LOG_DIR/debootstrap.log"; return 1; }
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb $DEBIAN_SECURITY_MIRROR bookworm-security main
EOF
  # The host's CA bundle: package installs inside builds (npm ci) trust what the host trusts.
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
  cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  cp "$HOST_CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/host-ca-bundle.crt"
  # As Debian's official images: no services started by package installs, no docs, no apt cache.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
  echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" -c . | docker import --change "LABEL $LABEL=$1" --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - switchyard-local/debian:bookworm >/dev/null
  rm -rf "$rootfs"
}

# docker build of a stand-in: build_standin TAG KEY DOCKERFILE CONTEXT
build_standin() {
  docker build -q --force-rm --label "$LABEL=$2" -f "$3" -t "$1" "$4" >"$LOG_DIR/build-$(echo "$1" | tr '/:' '--').log" 2>&1 ||
    { tail -n 30 "$LOG_DIR/build-$(echo "$1" | tr '/:' '--').log"; return 1; }
}

build_node() {
  local ctx="$WORK/node" npm_dir
  mkdir -p "$ctx"
  npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
  cp "$(readlink -f "$(command -v node)")" "$ctx/node"
  cp -a "$npm_dir" "$ctx/npm"
  build_standin "$1" "$2" docker/local-images/node.Dockerfile "$ctx"
  rm -rf "$ctx"
}

phase 'base images (debootstrap, node, stand-ins)'
LI=docker/local-images
DEBIAN_KEY="$( (echo "$DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR"; sed -n '/^build_debian()/,/^}/p' docker/test-compose.sh; cat "$HOST_CA_BUNDLE") | sha256sum | cut -c1-16)"
ensure_image switchyard-local/debian:bookworm "$DEBIAN_KEY" build_debian "$DEBIAN_KEY"
BASE_ID="$(docker image inspect --format '{{.Id}}' switchyard-local/debian:bookworm)"
NODE_KEY="$( (echo "$BASE_ID $(node --version) $(npm --version)"; cat "$LI/node.Dockerfile") | sha256sum | cut -c1-16)"
ensure_image node:20-bookworm-slim "$NODE_KEY" build_node node:20-bookworm-slim "$NODE_KEY"
REDIS_KEY="$( (echo "$BASE_ID"; cat "$LI/redis.Dockerfile" "$LI/redis-entrypoint.sh") | sha256sum | cut -c1-16)"
ensure_image redis:7-alpine "$REDIS_KEY" build_standin redis:7-alpine "$REDIS_KEY" "$LI/redis.Dockerfile" "$LI"
PG_KEY="$( (echo "$BASE_ID"; cat "$LI/postgres.Dockerfile" "$LI/postgres-entrypoint.sh") | sha256sum | cut -c1-16)"
ensure_image postgres:16-alpine "$PG_KEY" build_standin postgres:16-alpine "$PG_KEY" "$LI/postgres.Dockerfile" "$LI"
PROM_KEY="$( (echo "$BASE_ID"; cat "$LI/prometheus.Dockerfile") | sha256sum | cut -c1-16)"
ensure_image prom/prometheus:v2.53.0 "$PROM_KEY" build_standin prom/prometheus:v2.53.0 "$PROM_KEY" "$LI/prometheus.Dockerfile" "$LI"
# Stand-ins replaced by a new recipe are left dangling: remove them (only ours, by label).
docker image prune -f --filter "label=$LABEL" >/dev/null

# ---- 4. Switchyard's image, from docker/Dockerfile unchanged ----
phase 'switchyard image (docker/Dockerfile)'
# The build stage is tagged too, so that removing old images keeps its cache (npm ci, tsc).
docker build -q --force-rm --label org.switchyard.compose-test=1 -f docker/Dockerfile --target build -t switchyard-local/build-stage:latest . >"$LOG_DIR/build-switchyard.log" 2>&1 ||
  { tail -n 40 "$LOG_DIR/build-switchyard.log"; fail 'building the build stage of docker/Dockerfile'; }
docker build -q --force-rm --label org.switchyard.compose-test=1 -f docker/Dockerfile -t switchyard:local . >>"$LOG_DIR/build-switchyard.log" 2>&1 ||
  { tail -n 40 "$LOG_DIR/build-switchyard.log"; fail 'building docker/Dockerfile'; }
docker image prune -f --filter label=org.switchyard.compose-test=1 >/dev/null
say "switchyard:local $(docker image inspect --format '{{.Id}} {{.Size}}' switchyard:local | awk '{ printf "%s, %d MB", substr($1, 8, 12), $2 / 1e6 }'), user $(docker image inspect --format '{{.Config.User}}' switchyard:local)"

# ---- 5. up ----
phase 'docker-compose up -d'
compose down -v --remove-orphans >/dev/null 2>&1 || true # a stack left over by a failed run
DANGLING_VOLUMES_BEFORE="$(docker volume ls -q --filter dangling=true | sort)"
STACK_UP=1
compose up -d 2>&1 | sed 's/^/   /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail 'docker-compose up -d'

# Every container running and healthy (those with a healthcheck); register exited 0.
all_healthy() {
  local bad='' id name state health code
  for id in $(compose ps -q); do
    IFS='|' read -r name state health code < <(docker inspect --format '{{.Name}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}' "$id")
    name="${name#/}"
    case "$name" in
    *_register_*) [ "$state" = exited ] && [ "$code" = 0 ] || bad+=" $name:$state:$code" ;;
    *) [ "$state" = running ] && { [ -z "$health" ] || [ "$health" = healthy ]; } || bad+=" $name:$state${health:+:$health}" ;;
    esac
  done
  DETAIL="not yet:$bad"
  [ -z "$bad" ]
}
phase 'healthchecks healthy'
eventually 'every container running and healthy' 180 all_healthy
say "$(compose ps -q | wc -l) containers: running and healthy (register: exited 0)"
[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.service=grafana)" ] ||
  fail 'grafana should be left out of this run'
# Published on loopback only (compose.yaml's default SWITCHYARD_PUBLISH_ADDRESS).
for published in gateway-eu-west:8080:127.0.0.1:8080 gateway-eu-north:8080:127.0.0.1:8081 prometheus:9090:127.0.0.1:9090; do
  IFS=: read -r service port want <<<"$published"
  got="$(compose port "$service" "$port")"
  [ "$got" = "$want" ] || fail "$service:$port published on $got, not $want"
done
say 'ports published on 127.0.0.1 only: 8080, 8081, 9090'

# GET a URL inside a service's container (ports not published to the host).
inside() {
  compose exec -T "$1" node -e "fetch(process.argv[1]).then(async (r) => { process.stdout.write(await r.text()); process.exit(r.ok ? 0 : 1); }, (e) => { console.error(e.message); process.exit(1); })" "$2"
}
# (Output is captured before grep -q: with pipefail, grep -q quitting early fails the writer with SIGPIPE.)
REGIONS=(eu-west eu-north)
declare -A NODE_OF=([eu-west]=sim-1 [eu-north]=sim-2)
# Each region's scheduler has its own region's agent, fresh, and counts no node without an agent
# (the other region's agent is seen by the other scheduler: agent_seen_at in the shared Postgres).
nodes_fresh() {
  local metrics region
  for region in "${REGIONS[@]}"; do
    metrics="$(inside "scheduler-$region" http://127.0.0.1:9090/metrics)" || { DETAIL="scheduler-$region: no /metrics"; return 1; }
    grep -qx 'switchyard_scheduler_nodes{state="fresh"} 1' <<<"$metrics" && grep -qx 'switchyard_scheduler_nodes{state="no_agent"} 0' <<<"$metrics" ||
      { DETAIL="scheduler-$region: $(grep '^switchyard_scheduler_nodes{' <<<"$metrics" | tr '\n' ' ')"; return 1; }
  done
}
token_of() {
  compose exec -T "$1" sh -c 'set -e; test -s /tokens/join-token; echo "$(id -un) $(ls -A /tokens | tr "\n" " ")$(stat -c "%a %U" /tokens/join-token) $(sha256sum </tokens/join-token | cut -c1-16)"; ! touch /tokens/x 2>/dev/null'
}

phase 'register service and agents'
register_log="$(compose logs --no-color register)"
grep -q 'registered sim-1 (new join token)' <<<"$register_log" || fail 'register did not hand sim-1 a token'
grep -q 'registered sim-2 (new join token)' <<<"$register_log" || fail 'register did not hand sim-2 a token'
TOKEN_1="$(token_of agent-1)" || fail "agent-1's token"
TOKEN_2="$(token_of agent-2)" || fail "agent-2's token"
for t in "$TOKEN_1" "$TOKEN_2"; do
  [[ "$t" =~ ^node\ join-token\ 400\ node\ [0-9a-f]{16}$ ]] || fail "an agent's token volume: $t (want: user node, only join-token, 0400 owned by node, read-only)"
done
[ "${TOKEN_1##* }" != "${TOKEN_2##* }" ] || fail 'both agents got the same token'
say "agent-1 and agent-2 (user node) each see only their own join-token, mode 0400, read-only"
eventually 'each scheduler: switchyard_scheduler_nodes{state="fresh"} 1, no_agent 0' 60 nodes_fresh
say 'scheduler-eu-west and scheduler-eu-north: switchyard_scheduler_nodes{state="fresh"} 1 each, no_agent 0'

phase 'openai SDK against both gateways'
node docker/test-compose-check.mjs sdk | sed 's/^/   /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail 'the SDK checks'
# Each region's background response was admitted by that region's worker (its own queue).
for region in eu-west eu-north; do
  line="$(inside "worker-$region" http://127.0.0.1:9091/metrics | grep '^switchyard_queue_wait_seconds_count{priority="batch"}' || true)"
  [ -n "$line" ] && [ "${line##* }" -ge 1 ] || fail "worker-$region ran no background response: ${line:-no switchyard_queue_wait_seconds_count}"
  say "worker-$region: $line"
done

phase 'regions that stand alone'
regions_out="$(node docker/test-compose-check.mjs regions)" || { printf '%s\n' "$regions_out" | sed 's/^/   /'; fail 'the regional checks'; }
grep -v '^responses ' <<<"$regions_out" | sed 's/^/   /'
declare -A RESPONSE_OF
read -r _ west north <<<"$(grep '^responses ' <<<"$regions_out")"
RESPONSE_OF[eu-west]="${west#eu-west=}"
RESPONSE_OF[eu-north]="${north#eu-north=}"
# Each region's Redis holds only its own node's ledger and live state, and its own responses.
redis_cli() { compose exec -T "redis-$1" redis-cli --raw "${@:2}"; }
for region in "${REGIONS[@]}"; do
  node="${NODE_OF[$region]}"
  keys="$(redis_cli "$region" KEYS '*' | sort)"
  grep -qx 'switchyard:capacity:{ledger}:totals' <<<"$keys" || fail "redis-$region has no ledger: $(tr '\n' ' ' <<<"$keys")"
  ledger="$(redis_cli "$region" HKEYS 'switchyard:capacity:{ledger}:totals' | sort | tr '\n' ' ')"
  [ "$ledger" = "s:$node t:$node " ] || fail "redis-$region's ledger holds: $ledger(want only $node)"
  live="$(redis_cli "$region" HKEYS switchyard:live-nodes | tr '\n' ' ')"
  [ "$live" = "$node " ] || fail "redis-$region's live state holds: $live(want only $node)"
  responses="$(grep '^switchyard:resp:resp_' <<<"$keys" || true)"
  grep -qx "switchyard:resp:${RESPONSE_OF[$region]}" <<<"$responses" || fail "redis-$region does not hold ${RESPONSE_OF[$region]}"
  foreign="$(grep -v "$region\$" <<<"$responses" || true)"
  [ -z "$foreign" ] || fail "redis-$region holds another region's responses: $foreign"
  say "redis-$region: $(wc -l <<<"$keys") keys; ledger ${ledger% }; live-nodes ${live% }; $(wc -l <<<"$responses") responses, all ending $region"
done

phase 'Prometheus targets'
node docker/test-compose-check.mjs targets | sed 's/^/   /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail 'Prometheus targets'

phase 'volumes writable by their users'
compose exec -T scheduler-eu-west sh -c 'set -e; [ "$(id -un)" = node ]; touch /app/data/.write-test; rm /app/data/.write-test' || fail "/app/data not writable by the image's user"
say "switchyard image: user node writes /app/data"
compose exec -T postgres sh -c 'set -e; [ "$(stat -c %U "$PGDATA/PG_VERSION")" = postgres ]; n="$(psql -U switchyard -d switchyard -tAc "select count(*) from information_schema.tables where table_schema = current_schema()")"; [ "$n" -gt 0 ]; echo "pgdata owned by postgres, $n tables migrated"' | sed 's/^/   postgres: /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail 'pgdata'
compose exec -T prometheus sh -c 'set -e; touch /prometheus/.write-test; rm /prometheus/.write-test; test -d /prometheus/wal; echo "$(id -un) writes /prometheus (wal present)"' | sed 's/^/   prometheus: /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail 'prometheus-data'

# ---- 6. up again: same tokens, agents stay connected, also through a scheduler restart ----
phase 'up -d again + both schedulers restarted'
compose up -d 2>&1 | sed 's/^/   /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail 'docker-compose up -d (again)'
eventually 'every container running and healthy (again)' 180 all_healthy
[ "$(compose logs --no-color register | grep -c 'already registered: join token kept')" -ge 2 ] || fail 'register run again did not keep the tokens'
[ "$(token_of agent-1)" = "$TOKEN_1" ] && [ "$(token_of agent-2)" = "$TOKEN_2" ] || fail 'the tokens changed on the second up'
say 'register ran again: both join tokens kept'
compose restart scheduler-eu-west scheduler-eu-north 2>&1 | sed 's/^/   /'
eventually 'every container running and healthy (after the scheduler restart)' 180 all_healthy
eventually 'each scheduler: fresh 1, no_agent 0 (after the scheduler restart)' 60 nodes_fresh
for agent in agent-1 agent-2; do
  refused="$(inside "$agent" http://127.0.0.1:9400/metrics | grep '^switchyard_agent_refused ' || true)"
  [ "$refused" = 'switchyard_agent_refused 0' ] || fail "$agent: ${refused:-no switchyard_agent_refused}"
  agent_log="$(compose logs --no-color "$agent")"
  if grep -qi -e unauthenticated -e 'refused this agent' <<<"$agent_log"; then fail "$agent was refused: $(grep -i -m1 -e unauthenticated -e 'refused this agent' <<<"$agent_log")"; fi
done
say 'each scheduler fresh 1 after the restart; agents: switchyard_agent_refused 0, no UNAUTHENTICATED'
node docker/test-compose-check.mjs sdk | sed 's/^/   /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail 'the SDK checks (again)'

# ---- 7. down ----
phase 'docker-compose down -v'
[ "${KEEP_STACK:-}" = 1 ] && exit 0
compose down -v --remove-orphans 2>&1 | sed 's/^/   /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail 'docker-compose down -v'
STACK_UP=''
left="$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")"
[ -z "$left" ] || fail "containers left: $left"
left="$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
[ -z "$left" ] || fail "volumes left: $left"
left="$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
[ -z "$left" ] || fail "networks left: $left"
[ "$(docker volume ls -q --filter dangling=true | sort)" = "$DANGLING_VOLUMES_BEFORE" ] || fail 'anonymous volumes left behind'
say 'no container, volume or network of the project left'

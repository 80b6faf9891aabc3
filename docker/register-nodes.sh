#!/bin/sh
# One-shot (compose service `register`): registers the simulated nodes through the admin API and
# writes each node's join token into that node's own volume (/tokens/<node>/join-token), readable
# only by the image's user (node, uid 1000) that the agents run as.
#
# Idempotent: `compose up` run again registers the nodes again, which keeps their join tokens, so
# running agents stay connected. Only a node whose token file is missing (a new volume) gets a
# new token (--rotate-token), which replaces the old one at once.
set -eu
umask 077
AGENT_UID="${AGENT_UID:-1000}"
TOKENS_DIR="${TOKENS_DIR:-/tokens}"
register() {
  id="$1"; region="$2"; cluster="$3"; url="$4"; tps="$5"; seqs="$6"
  file="$TOKENS_DIR/$id/join-token"
  rotate=""
  [ -s "$file" ] || rotate="--rotate-token"
  out="$(node dist/cli/main.js nodes register --json --id "$id" --region "$region" --cluster "$cluster" --url "$url" \
    --engine vllm --models llama-3.1-8b-instruct --tokens-per-second "$tps" --max-sequences "$seqs" $rotate)"
  token="$(printf '%s' "$out" | node -e "let s='';process.stdin.on('data',(c)=>s+=c).on('end',()=>process.stdout.write(JSON.parse(s).join_token ?? ''))")"
  if [ -n "$token" ]; then
    printf '%s' "$token" > "$file.new"
    chown "$AGENT_UID:$AGENT_UID" "$file.new"
    chmod 0400 "$file.new"
    mv "$file.new" "$file"
    echo "registered $id (new join token)"
  else
    echo "registered $id (already registered: join token kept)"
  fi
}
register sim-1 eu-west eu-west-a http://sim-1:9101 2400 64
register sim-2 eu-north eu-north-a http://sim-2:9102 1200 32

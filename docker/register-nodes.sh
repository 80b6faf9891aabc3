#!/bin/sh
# One-shot (compose service `register`): registers the simulated nodes through the admin API and
# writes each join token to /tokens/<node>.token for that node's agent. Re-running `compose up`
# re-registers them (a node's token is shown only once, so an existing node is removed first).
set -eu
register() {
  id="$1"; region="$2"; cluster="$3"; url="$4"; tps="$5"; seqs="$6"
  node dist/cli/main.js nodes remove "$id" >/dev/null 2>&1 || true
  node dist/cli/main.js nodes register --json --id "$id" --region "$region" --cluster "$cluster" --url "$url" \
    --engine vllm --models llama-3.1-8b-instruct --tokens-per-second "$tps" --max-sequences "$seqs" \
    | node -e "let s='';process.stdin.on('data',(c)=>s+=c).on('end',()=>process.stdout.write(JSON.parse(s).join_token))" > "/tokens/$id.token"
  echo "registered $id"
}
register sim-1 eu-west eu-west-a http://sim-1:9101 2400 64
register sim-2 eu-north eu-north-a http://sim-2:9102 1200 32

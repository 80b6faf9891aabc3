# Stand-in for node:20-bookworm-slim (what docker/Dockerfile builds FROM), made from this
# machine's own node binary and npm on the local Debian base: no registry needed.
# Context (prepared by docker/test-compose.sh): node (the binary), npm (npm's package directory).
FROM switchyard-local/debian:bookworm
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
# The official image's user: node, uid/gid 1000, home /home/node.
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && mkdir -p /usr/local/etc \
 && printf 'cafile=/etc/ssl/certs/ca-certificates.crt\nfund=false\nupdate-notifier=false\n' > /usr/local/etc/npmrc \
 && node --version && npm --version
# Package installs in builds (npm ci) trust what the host trusts: its CA bundle is in the base.
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]

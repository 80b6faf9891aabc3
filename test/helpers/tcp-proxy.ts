/** The TCP proxy lives with the benchmarks (they use it too); tests import it from here. */
export { TcpProxy } from '../../bench/lib/tcp-proxy.js';

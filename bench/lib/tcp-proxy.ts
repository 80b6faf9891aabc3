import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a real service, to take it away from the processes under test and give
 * it back (the shared Postgres of the machine cannot be stopped by one test file). `cut()` drops
 * every open connection and refuses new ones, as a crashed server does; `restore()` accepts again.
 * With `delayMs` every chunk is held that long in each direction (a link between regions: the
 * round trip grows by twice it); `connections` counts the connections accepted, and with
 * `recording` on, `clientChunks` holds what the clients wrote and when (a pipeline is one write).
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  connections = 0;
  /** Each chunk from a client, while `recording`: when it arrived (performance.now()) and its bytes. */
  readonly clientChunks: { readonly at: number; readonly data: Buffer; readonly connection: number }[] = [];
  recording = false;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
    private readonly delayMs = 0,
  ) {}

  async start(port = 0): Promise<number> {
    const server = createServer((client) => {
      const connection = ++this.connections;
      const upstream = connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.on('data', (data: Buffer) => {
        if (this.recording) this.clientChunks.push({ at: performance.now(), data, connection });
      });
      if (this.delayMs === 0) {
        client.pipe(upstream).pipe(client);
        return;
      }
      // Equal delays keep the order of the chunks; ends are delayed the same way.
      const delayed = (from: Socket, to: Socket): void => {
        from.on('data', (chunk: Buffer) => setTimeout(() => to.destroyed || to.write(chunk), this.delayMs));
        from.on('end', () => setTimeout(() => to.end(), this.delayMs));
      };
      delayed(client, upstream);
      delayed(upstream, client);
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    this.port = typeof address === 'object' && address !== null ? address.port : 0;
    this.server = server;
    return this.port;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server !== undefined) await new Promise((r) => server.close(r));
  }

  async restore(): Promise<void> {
    await this.start(this.port);
  }

  async stop(): Promise<void> {
    await this.cut();
  }
}

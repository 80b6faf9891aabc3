import type { ResponseStore, StoredResponse } from '../../core/storage/response-store.js';
import { regionOfResponseId } from '../responses/translate.js';
import type { Peer, RegionPeers } from './region-peers.js';

/**
 * The response store as a conversation across regions sees it: a response id names its region,
 * and one this region does not hold (it is hot in another region's Redis) is read from that
 * region's gateway (`/internal/v1/responses/{id}`, one round trip). Archived responses are in
 * the global Postgres, which the local store reads already. Writes stay local: a conversation
 * continued here keeps its new turns here.
 */
export class RegionalResponseStore implements ResponseStore {
  constructor(
    private readonly local: ResponseStore,
    private readonly peers: RegionPeers,
    private readonly ownRegion: string,
  ) {}

  async get(id: string): Promise<StoredResponse | undefined> {
    const found = await this.local.get(id);
    if (found !== undefined) return found;
    const peer = this.peerOf(id);
    return peer === undefined ? undefined : this.peers.fetchResponse(peer, id);
  }

  /** The standalone region that holds `id`, when it is not this one. */
  peerOf(id: string): Peer | undefined {
    const region = regionOfResponseId(id);
    return region === undefined || region === this.ownRegion ? undefined : this.peers.peer(region);
  }

  put(r: StoredResponse): Promise<void> {
    return this.local.put(r);
  }

  transition(id: string, from: Parameters<ResponseStore['transition']>[1], patch: Partial<StoredResponse>): Promise<StoredResponse | undefined> {
    return this.local.transition(id, from, patch);
  }

  delete(id: string): Promise<boolean> {
    return this.local.delete(id);
  }

  archiveIdle(idleMs: number): Promise<number> {
    return this.local.archiveIdle(idleMs);
  }

  close(): Promise<void> {
    return this.local.close();
  }
}

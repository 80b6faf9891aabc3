import { useEffect, useState } from 'preact/hooks';
import { admin } from '../api.js';
import { ConfirmButton } from '../components/confirm-button.js';
import { Notice, errorText } from '../components/notice.js';
import { NodeRow } from '../components/node-row.js';
import { RegisterNode } from '../components/register-node.js';
import type { Fleet } from '../types.js';

/** The fleet, live: one server-sent-event stream (`/admin/v1/fleet/stream`) for the whole page. */
export function FleetPage() {
  const [fleet, setFleet] = useState<Fleet | undefined>();
  const [live, setLive] = useState<'connecting' | 'live' | 'paused'>('connecting');
  const [message, setMessage] = useState<{ kind: 'error' | 'success'; text: string } | undefined>();

  useEffect(() => {
    const source = new EventSource('/admin/v1/fleet/stream');
    source.addEventListener('fleet', (e) => {
      setFleet(JSON.parse((e as MessageEvent<string>).data) as Fleet);
      setLive('live');
    });
    source.onerror = () => {
      setLive('paused');
      // A stream refused (an ended session) closes for good: ask the API why, in words.
      if (source.readyState === EventSource.CLOSED) admin.get('/fleet').catch((err: unknown) => setMessage({ kind: 'error', text: errorText(err) }));
    };
    return () => source.close();
  }, []);

  const act = (what: Promise<unknown>, done: string): void => {
    setMessage(undefined);
    what.then(
      () => setMessage({ kind: 'success', text: done }),
      (err: unknown) => setMessage({ kind: 'error', text: errorText(err) }),
    );
  };
  const nodes = fleet?.regions.flatMap((r) => r.clusters.flatMap((c) => c.nodes)) ?? [];

  return (
    <>
      <div class="page-head">
        <h1>Fleet</h1>
        <p class="live" role="status">
          <span class={`dot dot-${live}`} aria-hidden="true" />
          {live === 'live' ? `Live, updated ${fleet === undefined ? '' : new Date(fleet.at).toLocaleTimeString()}` : live === 'connecting' ? 'Connecting…' : 'Live updates paused; reconnecting…'}
        </p>
      </div>
      {message !== undefined && <Notice kind={message.kind}>{message.text}</Notice>}
      <p class="summary">
        {nodes.length} nodes: {nodes.filter((n) => n.available).length} serving, {nodes.filter((n) => n.draining).length} draining,{' '}
        {nodes.filter((n) => !n.available && !n.draining).length} not serving.
      </p>
      {fleet?.regions.map((region) => (
        <section key={region.id} aria-labelledby={`region-${region.id}`}>
          <h2 id={`region-${region.id}`}>
            Region {region.name} <span class="muted">({region.id})</span>
          </h2>
          {region.clusters.length === 0 && <p class="muted">No nodes in this region.</p>}
          {region.clusters.map((cluster) => (
            <div class="table-wrap" key={cluster.id}>
              <table class="nodes">
                <caption>Cluster {cluster.id}</caption>
                <thead>
                  <tr>
                    <th scope="col">Node</th>
                    <th scope="col">State</th>
                    <th scope="col">Report age</th>
                    <th scope="col">Engine running / waiting</th>
                    <th scope="col">KV cache</th>
                    <th scope="col">GPUs (use, memory)</th>
                    <th scope="col">Reserved / capacity</th>
                    <th scope="col">Tokens/s</th>
                    <th scope="col">Actions</th>
                  </tr>
                </thead>
                <tbody>
                  {cluster.nodes.map((n) => (
                    <NodeRow key={n.id} node={n}>
                      {n.source === 'static' ? (
                        <span class="muted">declared in regions.yaml</span>
                      ) : (
                        <>
                          {n.draining ? (
                            <ConfirmButton label="Resume" question={`Resume ${n.id}?`} onConfirm={() => act(admin.post(`/nodes/${n.id}/resume`), `${n.id} resumed: it takes new requests again.`)} />
                          ) : (
                            <ConfirmButton label="Drain" question={`Drain ${n.id}?`} onConfirm={() => act(admin.post(`/nodes/${n.id}/drain`), `${n.id} is draining: no new requests; open ones finish.`)} />
                          )}{' '}
                          <ConfirmButton danger label="Remove" question={`Remove ${n.id}?`} onConfirm={() => act(admin.delete(`/nodes/${n.id}`), `${n.id} removed.`)} />
                        </>
                      )}
                    </NodeRow>
                  ))}
                </tbody>
              </table>
            </div>
          ))}
        </section>
      ))}
      <RegisterNode regions={fleet?.regions.map((r) => r.id) ?? []} />
    </>
  );
}

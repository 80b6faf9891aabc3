import { useCallback, useEffect, useState } from 'preact/hooks';
import { admin, type List } from '../api.js';
import { ConfirmButton } from '../components/confirm-button.js';
import { Notice, errorText } from '../components/notice.js';

interface Queues {
  readonly queues: Array<{ model: string; region: string; waiting: number; queued_tokens: number }>;
  readonly wait: Array<{ priority: string; admitted: number; mean_seconds: number | null; p50_seconds_at_most: number | null; p95_seconds_at_most: number | null }>;
  readonly rejections: Record<string, number>;
  readonly rate_limited: Record<string, number>;
  readonly background: { workers: number | null; unavailable: string | null };
}

interface BackgroundResponse {
  readonly id: string;
  readonly job_state: string;
  readonly status: string | null;
  readonly model?: string;
  readonly tenant?: string;
  readonly created_at?: string;
}

const secs = (s: number | null): string => (s === null ? '—' : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`);

/** Admission queues, waits and rejections (this gateway, refreshed every 2 s) and background responses. */
export function QueuesPage() {
  const [q, setQ] = useState<Queues | undefined>();
  const [jobs, setJobs] = useState<BackgroundResponse[] | undefined>();
  const [jobsNote, setJobsNote] = useState<string | undefined>();
  const [message, setMessage] = useState<{ kind: 'error' | 'success'; text: string } | undefined>();

  const load = useCallback(() => {
    admin.get<Queues>('/queues').then(setQ, (err: unknown) => setMessage({ kind: 'error', text: errorText(err) }));
    admin.get<List<BackgroundResponse>>('/responses').then(
      (l) => setJobs(l.data),
      (err: unknown) => setJobsNote(errorText(err)),
    );
  }, []);
  useEffect(() => {
    load();
    const timer = setInterval(load, 2000);
    return () => clearInterval(timer);
  }, [load]);

  const cancel = (id: string): void => {
    admin.post(`/responses/${id}/cancel`).then(
      () => {
        setMessage({ kind: 'success', text: `${id} cancelled.` });
        load();
      },
      (err: unknown) => setMessage({ kind: 'error', text: errorText(err) }),
    );
  };

  return (
    <>
      <h1>Queues and jobs</h1>
      {message !== undefined && <Notice kind={message.kind}>{message.text}</Notice>}
      <section aria-labelledby="admission-title">
        <h2 id="admission-title">Admission queues (this gateway)</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Region</th>
                <th scope="col">Waiting</th>
                <th scope="col">Queued tokens</th>
              </tr>
            </thead>
            <tbody>
              {q?.queues.map((x) => (
                <tr key={`${x.model}/${x.region}`}>
                  <th scope="row">{x.model}</th>
                  <td>{x.region}</td>
                  <td class="num">{x.waiting}</td>
                  <td class="num">{x.queued_tokens.toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {q !== undefined && q.queues.length === 0 && <p class="muted">Nothing is waiting for capacity.</p>}
      </section>
      <section aria-labelledby="wait-title">
        <h2 id="wait-title">Wait for capacity, by priority (since this gateway started)</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Priority</th>
                <th scope="col">Admitted</th>
                <th scope="col">Mean wait</th>
                <th scope="col">p50 at most</th>
                <th scope="col">p95 at most</th>
              </tr>
            </thead>
            <tbody>
              {q?.wait.map((w) => (
                <tr key={w.priority}>
                  <th scope="row">{w.priority}</th>
                  <td class="num">{w.admitted}</td>
                  <td class="num">{secs(w.mean_seconds)}</td>
                  <td class="num">{secs(w.p50_seconds_at_most)}</td>
                  <td class="num">{secs(w.p95_seconds_at_most)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      <section aria-labelledby="rejections-title">
        <h2 id="rejections-title">Rejections</h2>
        <dl class="stats">
          {Object.entries(q?.rejections ?? {}).map(([reason, n]) => (
            <div key={reason}>
              <dt>No capacity: {reason.replace('_', ' ')}</dt>
              <dd>{n}</dd>
            </div>
          ))}
          {Object.entries(q?.rate_limited ?? {}).map(([reason, n]) => (
            <div key={`rl-${reason}`}>
              <dt>Rate limited: {reason}</dt>
              <dd>{n}</dd>
            </div>
          ))}
        </dl>
      </section>
      <section aria-labelledby="jobs-title">
        <h2 id="jobs-title">Background responses</h2>
        {q?.background.unavailable != null && <Notice kind="error">{q.background.unavailable}</Notice>}
        <p class="muted">Workers serving this region: {q?.background.workers ?? 'unknown'}. Finished responses leave this list.</p>
        {jobsNote !== undefined && <Notice kind="info">{jobsNote}</Notice>}
        {jobs !== undefined && (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Response</th>
                  <th scope="col">Job</th>
                  <th scope="col">Status</th>
                  <th scope="col">Model</th>
                  <th scope="col">Tenant</th>
                  <th scope="col">Created</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {jobs.map((j) => (
                  <tr key={j.id}>
                    <th scope="row">{j.id}</th>
                    <td>{j.job_state}</td>
                    <td>{j.status ?? 'gone'}</td>
                    <td>{j.model ?? ''}</td>
                    <td>{j.tenant ?? ''}</td>
                    <td>{j.created_at === undefined ? '' : new Date(j.created_at).toLocaleString()}</td>
                    <td>{(j.status === 'queued' || j.status === 'in_progress') && <ConfirmButton danger label="Cancel" question={`Cancel ${j.id}?`} onConfirm={() => cancel(j.id)} />}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {jobs !== undefined && jobs.length === 0 && <p class="muted">No background responses are waiting or running.</p>}
      </section>
    </>
  );
}

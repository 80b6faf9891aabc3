import type { ComponentChildren } from 'preact';

/** A message in words: errors are announced to screen readers at once, other notes politely. */
export function Notice({ kind, children }: { kind: 'error' | 'info' | 'success'; children: ComponentChildren }) {
  return (
    <div class={`notice notice-${kind}`} role={kind === 'error' ? 'alert' : 'status'}>
      <strong>{kind === 'error' ? 'Error: ' : kind === 'success' ? 'Done: ' : 'Note: '}</strong>
      {children}
    </div>
  );
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

import { useState } from 'preact/hooks';

/** A secret (API key, join token, command) shown once, with a copy button. */
export function SecretOnce({ label, value }: { label: string; value: string }) {
  const [copied, setCopied] = useState<string | undefined>();
  const copy = (): void => {
    navigator.clipboard.writeText(value).then(
      () => setCopied('Copied.'),
      () => setCopied('Copying is not allowed here; select the text and copy it.'),
    );
  };
  return (
    <div class="secret">
      <p class="secret-label">{label}</p>
      <code class="secret-value" data-testid="secret">{value}</code>
      <button type="button" onClick={copy}>
        Copy
      </button>{' '}
      <span role="status">{copied}</span>
    </div>
  );
}

import { useState } from 'preact/hooks';
import { PAGES, type PagePath } from '../app.js';
import { applyTheme, storedTheme, type Theme } from '../theme.js';

export function Header({ page, onLogout }: { page: PagePath; onLogout: () => void }) {
  const [theme, setTheme] = useState<Theme>(storedTheme());
  const choose = (t: Theme): void => {
    applyTheme(t);
    setTheme(t);
  };
  return (
    <header class="top">
      <span class="brand">Switchyard</span>
      <nav aria-label="Console pages">
        <ul>
          {PAGES.map((p) => (
            <li key={p.path}>
              <a href={`#/${p.path}`} aria-current={p.path === page ? 'page' : undefined}>
                {p.title}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <div class="top-actions">
        <label>
          Theme{' '}
          <select value={theme} onChange={(e) => choose((e.currentTarget as HTMLSelectElement).value as Theme)}>
            <option value="system">System</option>
            <option value="light">Light</option>
            <option value="dark">Dark</option>
          </select>
        </label>
        <button type="button" onClick={onLogout}>
          Log out
        </button>
      </div>
    </header>
  );
}

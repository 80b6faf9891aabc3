/** Light, dark, or the system's choice; the choice (not a secret) is kept in localStorage. */
export type Theme = 'system' | 'light' | 'dark';

export function storedTheme(): Theme {
  const t = localStorage.getItem('switchyard-theme');
  return t === 'light' || t === 'dark' ? t : 'system';
}

export function applyTheme(theme: Theme): void {
  if (theme === 'system') {
    delete document.documentElement.dataset['theme'];
    localStorage.removeItem('switchyard-theme');
  } else {
    document.documentElement.dataset['theme'] = theme;
    localStorage.setItem('switchyard-theme', theme);
  }
}

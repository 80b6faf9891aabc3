import { render } from 'preact';
import { App } from './app.js';
import { applyTheme, storedTheme } from './theme.js';
import './styles.css';

applyTheme(storedTheme());
const root = document.getElementById('app');
if (root !== null) render(<App />, root);

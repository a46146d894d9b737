/** Entry point: the theme before the first paint, then the app. */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.tsx';
import { initialTheme } from './shell/theme.ts';
import './bench.ts';
import './styles.css';

document.documentElement.dataset['theme'] = initialTheme();
createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);

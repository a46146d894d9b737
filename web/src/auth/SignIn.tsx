/** The sign-in form: shown when no key is stored or the server refused the stored one. */
import { useState, type FormEvent } from 'react';

interface SignInProps {
  message: string | null;
  busy: boolean;
  onSubmit: (key: string) => void;
}

export function SignIn({ message, busy, onSubmit }: SignInProps) {
  const [key, setKey] = useState('');
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (key.trim() !== '') onSubmit(key.trim());
  };
  return (
    <main className="signin-page">
      <form className="signin card" data-testid="signin" onSubmit={submit}>
        <h1>ArcNet Console</h1>
        <p className="muted">Sign in with an API key. The operator key of an embedded server is in <code>&lt;data-dir&gt;/operator.key</code>.</p>
        <label>
          API key
          <input name="apiKey" type="password" autoComplete="off" autoFocus value={key} onChange={(e) => setKey(e.target.value)} />
        </label>
        {message !== null && <p role="alert" className="alert">{message}</p>}
        <button type="submit" disabled={busy || key.trim() === ''}>{busy ? 'Checking…' : 'Sign in'}</button>
      </form>
    </main>
  );
}

/** Signs the operator in (fragment, stored key or the form) and then shows the console. */
import { useCallback, useEffect, useState } from 'react';
import { storedKey, storeKey, takeKeyFromFragment } from './auth/key-storage.ts';
import { SignIn } from './auth/SignIn.tsx';
import { checkKey, type Identity } from './auth/whoami.ts';
import { Console } from './shell/Console.tsx';

export function App() {
  const [key, setKey] = useState<string | null>(() => takeKeyFromFragment() ?? storedKey());
  const [identity, setIdentity] = useState<Identity | null>(null);
  const [message, setMessage] = useState<string | null>(null);

  // A `#key=` link opened in a tab that is already showing the console.
  useEffect(() => {
    const onHash = () => {
      const fromFragment = takeKeyFromFragment();
      if (fromFragment !== null) {
        setIdentity(null);
        setMessage(null);
        setKey(fromFragment);
      }
    };
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    if (key === null) return;
    let cancelled = false;
    void checkKey(key).then((check) => {
      if (cancelled) return;
      if (check.ok) {
        storeKey(key);
        setIdentity(check.identity);
        setMessage(null);
        return;
      }
      if (check.refused) storeKey(null);
      setKey(null);
      setMessage(check.message);
    });
    return () => {
      cancelled = true;
    };
  }, [key]);

  const signOut = useCallback((reason: string | null) => {
    storeKey(null);
    setIdentity(null);
    setKey(null);
    setMessage(reason);
  }, []);

  if (key === null || identity === null) {
    return <SignIn message={message} busy={key !== null} onSubmit={(next) => { setMessage(null); setKey(next); }} />;
  }
  return <Console apiKey={key} identity={identity} onSignOut={signOut} />;
}

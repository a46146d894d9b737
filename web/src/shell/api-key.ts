/** The signed-in key, for views that call the REST API. */
import { createContext, useContext } from 'react';

export const ApiKeyContext = createContext<string | null>(null);

export function useApiKey(): string {
  const key = useContext(ApiKeyContext);
  if (key === null) throw new Error('useApiKey outside the signed-in console');
  return key;
}

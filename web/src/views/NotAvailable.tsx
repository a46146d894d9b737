/** What a view shows when the server it talks to has no such route (an older server). */
export function NotAvailable({ what, route }: { what: string; route: string }) {
  return (
    <p className="notice" data-testid="not-available">
      {what} is not available on this server (<code>{route}</code> answered 404). The figures below come from the live feed alone.
    </p>
  );
}

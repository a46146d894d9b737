/**
 * Keeps a failing view from taking the console down with it: the error is shown in its place,
 * and the feed, the header and the other views go on working.
 */
import { Component, type ErrorInfo, type ReactNode } from 'react';

interface ViewBoundaryProps {
  name: string;
  children: ReactNode;
}

export class ViewBoundary extends Component<ViewBoundaryProps, { error: Error | null }> {
  override state: { error: Error | null } = { error: null };

  static getDerivedStateFromError(error: Error): { error: Error } {
    return { error };
  }

  override componentDidCatch(error: Error, info: ErrorInfo): void {
    console.error(`the ${this.props.name} view failed`, error, info.componentStack);
  }

  override render(): ReactNode {
    if (this.state.error === null) return this.props.children;
    return (
      <div className="page">
        <p role="alert" className="alert">The {this.props.name} view failed: {this.state.error.message}</p>
        <button type="button" onClick={() => this.setState({ error: null })}>Try again</button>
      </div>
    );
  }
}

/** The release, as `arcnet --version`, `/health` and the agent's hello report it. */
export const VERSION = '0.1.0';
